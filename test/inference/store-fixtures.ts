/** What the model store's tests share: a local mirror server, typed-failure checks, stray files. */
import { existsSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { modelsDir } from '../../src/inference/store.ts';
import { DropbearError } from '../../src/protocol/errors.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface TestServer {
  /** Where the catalog's file names are served: `http://127.0.0.1:<port>/mirror/`. */
  base: string;
  /** The URLs asked for, in order. */
  hits: string[];
  close: () => Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering with `handler`. */
export async function serve(handler: Handler): Promise<TestServer> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}/mirror/`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Rejects with a DropbearError whose code is `code`; returns it for further checks. */
export async function failsWith(p: Promise<unknown>, code: string): Promise<DropbearError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).code, (e as Error).message).toBe(code);
    return e as DropbearError;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

/** Files in the models folder other than model files named by digest and the index (temp files, leftovers). */
export function strays(home: string): string[] {
  if (!existsSync(modelsDir(home))) return [];
  return readdirSync(modelsDir(home)).filter((f) => f !== 'index.json' && !/^[0-9a-f]{64}\.onnx$/.test(f));
}
