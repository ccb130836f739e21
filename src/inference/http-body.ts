/**
 * Over-limit request bodies, answered so that every client sees the 413.
 *
 * Fastify's own check answers 413 from the Content-Length with `connection: close` and leaves the body
 * unread. The socket then closes with the body's bytes in its receive buffer, the kernel resets the
 * connection, and a client still writing its body gets EPIPE or ECONNRESET instead of the answer (on a
 * fast machine test/e2e/group.test.ts and test/inference/kserve.test.ts saw `fetch failed: write EPIPE`).
 * This hook answers first, with the server's usual error body, and reads the rest of the body and throws it
 * away on a connection that stays open. A body that goes on past DRAIN_CAP has its connection cut.
 * Used by the node's API (src/node/api.ts) and by serve-model (kserve-server.ts).
 */
import { errorCodes, type FastifyInstance } from 'fastify';

/** Bytes of an over-limit body read and dropped before its connection is cut instead. */
const DRAIN_CAP = 64 * 1024 * 1024;

export function refuseOversizedBodies(app: FastifyInstance, limit: number): void {
  app.addHook('onRequest', (req, _reply, done) => {
    const declared = Number(req.headers['content-length']);
    if (!(declared > limit)) {
      done();
      return;
    }
    let seen = 0;
    req.raw.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DRAIN_CAP) req.raw.socket.destroy();
    });
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
  });
}
