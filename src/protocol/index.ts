export * from './codec.ts';
export * from './crypto.ts';
export * from './errors.ts';
export * from './json-text.ts';
export * from './merkle.ts';
export * from './messages.ts';
export * from './policy.ts';
