/**
 * A replica never signs a second result for a request it already signed one for with the same model
 * (PROTOCOL.md, "Durability and restarts"): its own RESULTS go to disk before they leave (`saveResults`),
 * a restored replica takes them back (`ownResults`) instead of inferring those requests again, and a
 * replica that may have lost them (a `forgotten` record, or its disk) votes on no request it may have
 * voted on before (`resultsFloor`). One replica (node 1, a backup) driven by hand.
 */
import { describe, expect, it } from 'vitest';
import { type Action, type PersistRecord, Replica, type ReplicaConfig } from '../../src/consensus/replica.ts';
import {
  encode,
  hex,
  type Result,
  requestIdOf,
  resultsDigestOf,
  type SignedRequest,
  type SignedResults,
  sha256,
  uint,
} from '../../src/protocol/index.ts';
import { broadcasts, cls, G, GID, genesisCounters, mkReq, only, SMALL_CFG, T0 } from './fixtures.ts';

const SKEW = G.genesis.params.maxClockSkewMs;
const ME = 1;
const MODEL = G.genesis.nodes[ME].modelDigest;

function restored(
  o: {
    own?: { signed: SignedResults; newest: number }[];
    log?: PersistRecord[];
    models?: Uint8Array[];
    cfg?: Partial<ReplicaConfig>;
  } = {},
): Replica {
  return Replica.restore(
    G.genesis,
    ME,
    G.keys[ME],
    { ...SMALL_CFG, ...o.cfg },
    {
      lastExecuted: 0,
      lastReceiptHash: GID,
      lastTimestamp: 0,
      models: o.models ?? G.genesis.nodes.map((n) => n.modelDigest),
      ...genesisCounters(),
      recent: [],
      log: o.log ?? [],
      ownResults: o.own,
    },
  );
}

const fromPeer = (r: Replica, sr: SignedRequest, now: number) =>
  r.step({ type: 'message', from: 0, msg: { kind: 'forward', requests: [sr] } }, now);
const inferred = (r: Replica, sr: SignedRequest, result: Result, now: number, model = MODEL) =>
  r.step({ type: 'inferred', modelDigest: model, results: [{ requestId: requestIdOf(sr), result }] }, now);
/** Ids (hex) of the requests a step asked to infer. */
const toInfer = (a: Action[]) => only(a, 'infer').flatMap((x) => x.requests.map((q) => hex(q.requestId)));
const signedResults = (a: Action[]) => [
  ...broadcasts(a, 'results').map((m) => m.signed),
  ...only(a, 'send').flatMap((s) => (s.msg.kind === 'results' ? [s.msg.signed] : [])),
];

/** Node 1 takes `sr`, infers `result` and signs it: the RESULTS it saved before broadcasting it. */
function firstVote(sr: SignedRequest, result: Result): { signed: SignedResults; newest: number } {
  const r = new Replica(G.genesis, ME, G.keys[ME], SMALL_CFG);
  expect(toInfer(r.step({ type: 'request', request: sr }, T0))).toEqual([hex(requestIdOf(sr))]);
  const a = inferred(r, sr, result, T0 + 1);
  const save = only(a, 'saveResults');
  expect(save).toHaveLength(1);
  // On record before it leaves.
  const at = (t: Action['type']) => a.findIndex((x) => x.type === t);
  expect(at('saveResults')).toBeLessThan(at('broadcast'));
  expect(broadcasts(a, 'results').map((m) => m.signed)).toEqual([save[0].signed]);
  expect(hex(save[0].digest)).toBe(hex(resultsDigestOf(save[0].signed)));
  expect(save[0].newest).toBe(sr.request.timestamp);
  return { signed: save[0].signed, newest: save[0].newest };
}

describe('own RESULTS across a restart', () => {
  it('are taken back: the request is not inferred again, a second answer is not signed, the first is re-sent', () => {
    const sr = mkReq(1);
    const first = firstVote(sr, cls(7));
    const r = restored({ own: [first], cfg: { retransmitMs: 50 } });
    // The request reaches it again (a peer's FORWARD, a client retrying): no inference this time.
    expect(toInfer(fromPeer(r, sr, T0 + 10))).toEqual([]);
    expect(r.wantsOwnVote(hex(requestIdOf(sr)))).toBe(true);
    // Were it inferred anyway (the model answers with another score now), nothing is signed.
    const again = inferred(r, sr, cls(7, 900_001), T0 + 11);
    expect(only(again, 'saveResults')).toEqual([]);
    expect(signedResults(again)).toEqual([]);
    // The retransmission round sends the RESULTS it signed before the restart, byte for byte.
    const resent = signedResults(r.step({ type: 'tick' }, T0 + 200));
    expect(resent.length).toBeGreaterThan(0);
    for (const s of resent) expect(s).toEqual(first.signed);
  });

  it('for an older model do not stop a vote with the current one (no conflict: another model digest)', () => {
    const sr = mkReq(2);
    const first = firstVote(sr, cls(7));
    const newModel = sha256(new TextEncoder().encode('node 1, version 1'));
    const models = G.genesis.nodes.map((n, i) => (i === ME ? newModel : n.modelDigest));
    const r = restored({ own: [first], models });
    expect(toInfer(fromPeer(r, sr, T0 + 10))).toEqual([hex(requestIdOf(sr))]);
    const a = inferred(r, sr, cls(8), T0 + 11, newModel);
    expect(only(a, 'saveResults')).toHaveLength(1);
    expect(signedResults(a).map((s) => hex(s.batch.modelDigest))).toEqual([hex(newModel)]);
  });

  it('of another node are ignored', () => {
    const sr = mkReq(3);
    const first = firstVote(sr, cls(7));
    const r = restored({
      own: [{ ...first, signed: { ...first.signed, batch: { ...first.signed.batch, node: 2 } } }],
    });
    expect(toInfer(fromPeer(r, sr, T0 + 10))).toEqual([hex(requestIdOf(sr))]);
  });
});

describe('saving own RESULTS', () => {
  it('names the newest timestamp among their requests; answers for requests no longer held are not signed', () => {
    const r = new Replica(G.genesis, ME, G.keys[ME], SMALL_CFG);
    const held = mkReq(7, T0 + 3);
    fromPeer(r, held, T0 + 5);
    const both = r.step(
      {
        type: 'inferred',
        modelDigest: MODEL,
        results: [
          { requestId: requestIdOf(mkReq(8)), result: cls(1) },
          { requestId: requestIdOf(held), result: cls(2) },
        ],
      },
      T0 + 6.5,
    );
    expect(only(both, 'saveResults').map((x) => x.newest)).toEqual([T0 + 3]);
    expect(only(both, 'saveResults')[0].signed.batch.entries.map((e) => hex(e.requestId))).toEqual([
      hex(requestIdOf(held)),
    ]);
    // Executed or forgotten before its model answered: a vote is of no use, and could differ from one
    // signed before (inferred twice after a view change), which a peer would take as a double vote.
    const unheld = inferred(r, mkReq(9), cls(3), T0 + 7.25);
    expect(only(unheld, 'saveResults')).toEqual([]);
  });
});

describe('a replica that may have lost its own RESULTS', () => {
  const forgottenAt = (t: number): PersistRecord => ({ kind: 'forgotten', body: encode(uint, t) });

  it('votes on no request timestamped up to its restart plus twice the skew bound, whatever later records say', () => {
    const lostAt = T0 + 1000;
    const r = restored({ log: [forgottenAt(lostAt), { kind: 'signFloor', view: 1 }] });
    expect(r.resultsFloor).toBe(lostAt + 2 * SKEW);
    expect(r.signFloorView).toBe(1); // the views are known again; its results are not
    const now = lostAt + 2 * SKEW;
    const old = mkReq(4, lostAt + 2 * SKEW);
    expect(toInfer(fromPeer(r, old, now))).toEqual([]);
    expect(signedResults(inferred(r, old, cls(7), now + 1))).toEqual([]);
    const fresh = mkReq(5, lostAt + 2 * SKEW + 1);
    expect(toInfer(fromPeer(r, fresh, now + 2))).toEqual([hex(requestIdOf(fresh))]);
    const a = inferred(r, fresh, cls(7), now + 3);
    expect(only(a, 'saveResults')).toHaveLength(1);
    expect(signedResults(a)).toHaveLength(1);
  });

  it('takes the time of its first step when the record has none (written before records carried it), or when it lost its disk', () => {
    const r = restored({ log: [{ kind: 'forgotten' }] });
    expect(Number.isNaN(r.resultsFloor)).toBe(true);
    r.step({ type: 'tick' }, T0 + 5000);
    expect(r.resultsFloor).toBe(T0 + 5000 + 2 * SKEW);
    const lost = new Replica(G.genesis, ME, G.keys[ME], SMALL_CFG);
    lost.forgetful();
    lost.step({ type: 'catchUp' }, T0 + 7000);
    expect(lost.resultsFloor).toBe(T0 + 7000 + 2 * SKEW);
    expect(toInfer(fromPeer(lost, mkReq(6, T0 + 7000), T0 + 7001))).toEqual([]);
  });

  it('a node that lost nothing has no floor', () => {
    expect(
      restored({ log: [{ kind: 'prepare', view: 0, seq: 1, digest: new Uint8Array(32) }] }).resultsFloor,
    ).toBe(0);
    expect(new Replica(G.genesis, ME, G.keys[ME], SMALL_CFG).resultsFloor).toBe(0);
  });
});
