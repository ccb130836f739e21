// Worker threads start without the parent's loaders: register tsx, then load the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
