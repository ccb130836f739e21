import './attacks.ts';
import './twins.ts';

/** All Byzantine scripts, registered on import (byzantine.ts holds the basic ones and the registry). */
export { makeScript, scriptNames } from './byzantine.ts';
