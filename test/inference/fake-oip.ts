/**
 * A fake Open Inference Protocol server for RemoteBackend tests: it serves the metadata of a 128×128 model
 * named `m` (input `input`, output `logits`, 1000 classes) and lets the test answer `/infer` itself.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers one inference request with 1000 logits in the binary tensor data extension. */
export function sendBinaryLogits(res: ServerResponse, vals: Float32Array): void {
  const head = Buffer.from(
    JSON.stringify({
      outputs: [
        { name: 'logits', datatype: 'FP32', shape: [1, 1000], parameters: { binary_data_size: 4000 } },
      ],
    }),
  );
  res.writeHead(200, { 'inference-header-content-length': String(head.length) });
  res.end(Buffer.concat([head, Buffer.from(vals.buffer, vals.byteOffset, vals.byteLength)]));
}

/** Starts the server on 127.0.0.1; `infer` handles every `…/infer` request. */
export async function startFakeOip(
  infer: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const u = req.url ?? '';
    if (u === '/v2') return res.end(JSON.stringify({ extensions: ['binary_tensor_data'] }));
    if (u.endsWith('/infer')) return infer(req, res);
    if (u.startsWith('/v2/models/m'))
      return res.end(
        JSON.stringify({
          inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 128, 128] }],
          outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 1000] }],
        }),
      );
    res.writeHead(404);
    res.end('{}');
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
