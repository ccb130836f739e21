/** The stand-in model now lives with the other models (src/inference/standin.ts); kept here for the simulator's imports. */
export * from '../inference/standin.ts';
