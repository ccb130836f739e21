import { readFileSync } from 'node:fs';
import {
  CodecError,
  DropbearError,
  duplicateJsonKey,
  fromJson,
  Genesis,
  genesisProblem,
} from '../protocol/index.ts';

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new DropbearError('FILE_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DropbearError('FILE_BAD_JSON', `${path} is not JSON: ${(e as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys, other readers the first: such a file reads two ways.
  const dup = duplicateJsonKey(text);
  if (dup) throw new DropbearError('FILE_BAD_JSON', `${path} repeats a key (${dup}), so it reads two ways`);
  return value;
}

export function readGenesis(path: string): Genesis {
  let genesis: Genesis;
  try {
    genesis = fromJson(Genesis, readJsonFile(path));
  } catch (e) {
    if (e instanceof CodecError) throw new DropbearError('GENESIS_INVALID', `${path}: ${e.message}`);
    throw e;
  }
  const problem = genesisProblem(genesis);
  if (problem) throw new DropbearError('GENESIS_INVALID', `${path}: ${problem}`);
  return genesis;
}

export function stableJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
