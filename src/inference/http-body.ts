/**
 * Over-limit request bodies, answered so that every client sees the 413.
 *
 * Fastify's own check answers 413 with `connection: close` and leaves the rest of the body unread (from
 * the Content-Length, or once a chunked body grows past the limit). The socket then closes with the body's
 * bytes in its receive buffer, the kernel resets the connection, and a client still writing its body gets
 * EPIPE or ECONNRESET instead of the answer (on a fast machine test/e2e/group.test.ts and
 * test/inference/kserve.test.ts saw `fetch failed: write EPIPE`). These hooks answer first, with the
 * server's usual error body, and read the rest of the body and throw it away on a connection that stays
 * open: a declared Content-Length over the limit is refused before any of the body is read; a chunked body
 * is counted as it arrives and refused once it passes the limit. A body that goes on past the drain cap
 * has its connection cut instead. Used by the node's API (src/node/api.ts) and by serve-model
 * (kserve-server.ts).
 */
import { PassThrough } from 'node:stream';
import { errorCodes, type FastifyInstance } from 'fastify';

/** Bytes of an over-limit body read and dropped before its connection is cut instead. */
const DRAIN_CAP = 64 * 1024 * 1024;

export function refuseOversizedBodies(app: FastifyInstance, limit: number, drainCap = DRAIN_CAP): void {
  app.addHook('onRequest', (req, _reply, done) => {
    const declared = Number(req.headers['content-length']);
    if (!(declared > limit)) {
      done();
      return;
    }
    let seen = 0;
    req.raw.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > drainCap) req.raw.socket.destroy();
    });
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
  });
  // A body without a Content-Length (chunked; with neither header there is no body): the parser reads a
  // counting copy of it. Past the limit the copy stops (the parser waits on it and is dropped with the
  // request), the 413 goes out through the error handler, and the rest of the body is read and dropped.
  app.addHook('preParsing', (req, reply, payload, done) => {
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] === undefined) {
      done(null, payload);
      return;
    }
    const counted = new PassThrough();
    let seen = 0;
    let over = false;
    payload.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (over) {
        if (seen > drainCap) req.raw.socket.destroy();
        return;
      }
      if (seen > limit) {
        over = true;
        reply.send(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
        return;
      }
      counted.write(chunk);
    });
    payload.on('end', () => {
      if (!over) counted.end();
    });
    payload.on('error', (e) => {
      if (!over) counted.destroy(e);
    });
    done(null, counted);
  });
}
