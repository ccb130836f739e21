/**
 * The baseline for part `protocol`: one plain HTTP server (fastify) that checks each client's signature
 * and answers — the floor any signed-request service pays, with no consensus, no ledger, no certificate.
 * It takes what a Dropbear node takes on POST /v1/requests: one SignedRequest's canonical bytes
 * (application/octet-stream), `{requests: [...]}` as codec JSON, or a RequestList (the SDK's binary batch,
 * REQUEST_LIST_TYPE), batch-signed ones with one signature check per batch through a RequestAuthCache as
 * the nodes do; it answers `{requestId}` per request (JSON), or for a RequestList a BaselineAnswers.
 *
 *   node --import tsx bench/lib/baseline-server.ts <max-seconds>
 *
 * prints its URL on the first line of stdout and exits by itself after <max-seconds>.
 */
import Fastify from 'fastify';
import { watchParent } from '../../src/cli/parent.ts';
import {
  decode,
  encode,
  fromJson,
  hex,
  REQUEST_LIST_TYPE,
  Request,
  RequestAuthCache,
  RequestList,
  requestIdOfBody,
  SignedRequest,
  verifyRequestAuth,
} from '../../src/protocol/index.ts';
import { BASELINE_ANSWERS_TYPE, BaselineAnswers } from './baseline-codec.ts';

const maxSeconds = Number(process.argv[2] ?? 600);
const cache = new RequestAuthCache();
const app = Fastify({ logger: false, bodyLimit: 64 << 20 });
app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
  done(null, body),
);
app.addContentTypeParser(REQUEST_LIST_TYPE, { parseAs: 'buffer' }, (_req, body, done) =>
  done(null, { list: body }),
);

function check(sr: SignedRequest): { requestId: string } | { error: { code: string; message: string } } {
  const body = encode(Request, sr.request);
  const requestId = hex(requestIdOfBody(body));
  if (!verifyRequestAuth(sr, cache, body))
    return { error: { code: 'REQUEST_BAD_SIGNATURE', message: 'client signature invalid' } };
  return { requestId };
}

app.post<{ Body: Buffer | { list?: Buffer; requests?: unknown[]; request?: unknown } }>(
  '/v1/requests',
  async (req, reply) => {
    const b = req.body;
    if (!Buffer.isBuffer(b) && b?.list) {
      const answers = decode(RequestList, b.list).map((sr) => {
        const body = encode(Request, sr.request);
        return verifyRequestAuth(sr, cache, body)
          ? { kind: 'ok' as const, requestId: requestIdOfBody(body) }
          : { kind: 'refused' as const, code: 'REQUEST_BAD_SIGNATURE' };
      });
      return reply.type(BASELINE_ANSWERS_TYPE).send(Buffer.from(encode(BaselineAnswers, answers)));
    }
    if (Buffer.isBuffer(b)) {
      const r = check(decode(SignedRequest, b));
      if ('error' in r) reply.code(401);
      return r;
    }
    if (b?.requests) return { results: b.requests.map((j) => check(fromJson(SignedRequest, j))) };
    if (b?.request) return check(fromJson(SignedRequest, b.request));
    reply.code(400);
    return { error: { code: 'BAD_REQUEST', message: 'send {request} or {requests}' } };
  },
);

const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${url}\n`);
setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
// Started with an IPC channel (bench/parts/protocol.ts): its closing means the bench process is gone.
watchParent()(() => process.exit(0));
