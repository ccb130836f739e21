/**
 * Where the shared models and images are: $DROPBEAR_SHARED, else ../shared (a checkout beside them), else
 * /work/shared. Tests that need real models or images import their paths from here.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const found = [process.env.DROPBEAR_SHARED, '../shared', '/work/shared'].find(
  (p): p is string => !!p && existsSync(join(p, 'models', 'MANIFEST.md')),
);
if (!found)
  throw new Error(
    'the shared models and images were not found: set DROPBEAR_SHARED to the folder holding models/ and datasets/',
  );

export const SHARED = found;
export const MODELS_DIR = join(found, 'models');
export const DATA_DIR = join(found, 'datasets', 'imagenet-sample');
export const VAL_DIR = join(DATA_DIR, 'val');
