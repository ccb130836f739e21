/**
 * A small `fetch` over node:http with keep-alive connections, for load generators: the platform's fetch
 * (undici) costs ~0.4 ms of client CPU per call on this machine against ~0.1 ms for node:http, so with it
 * the single-process generator would saturate long before the servers. It implements what the SDK uses
 * (method, headers, body, signal → status, headers.get, json(), text(), arrayBuffer()), and is handed to
 * DropbearClient as `fetch`.
 */
import http from 'node:http';

export interface LightResponse {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  json(): Promise<unknown>;
  text(): Promise<string>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * What an aborted call rejects with when its signal gives no reason (with one, the reason, as the
 * platform's fetch does): one shared error, as building an Error per abort (its stack trace, through
 * tsx's source maps) cost ~2 % of the e2e client's CPU.
 */
const ABORTED = Object.assign(new Error('aborted'), { name: 'AbortError' });

export function lightFetch(opts: { maxSockets?: number } = {}): {
  fetch: typeof fetch;
  close(): void;
} {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 256 });
  const f = (input: string | URL, init: RequestInit = {}): Promise<LightResponse> =>
    new Promise((resolve, reject) => {
      const body = init.body as Uint8Array | string | undefined;
      const headers: Record<string, string | number> = {};
      for (const [k, v] of Object.entries((init.headers ?? {}) as Record<string, string>)) headers[k] = v;
      if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
      const signal = init.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason ?? ABORTED);
      const req = http.request(String(input), { method: init.method ?? 'GET', agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          signal?.removeEventListener('abort', onAbort);
          const all = Buffer.concat(chunks);
          const text = () => all.toString('utf8');
          const status = res.statusCode ?? 0;
          const h = res.headers;
          resolve({
            status,
            ok: status >= 200 && status < 300,
            headers: { get: (name) => (h[name.toLowerCase()] as string | undefined) ?? null },
            json: async () => JSON.parse(text()),
            text: async () => text(),
            arrayBuffer: async () =>
              all.buffer.slice(all.byteOffset, all.byteOffset + all.length) as ArrayBuffer,
          });
        });
        res.on('error', fail);
      });
      function fail(e: Error) {
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      }
      function onAbort() {
        req.destroy(signal?.reason ?? ABORTED);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', fail);
      req.end(body);
    });
  return { fetch: f as unknown as typeof fetch, close: () => agent.destroy() };
}
