/**
 * Funded replicas and a request signer, for the simulator tests of what a client's balance lets it do
 * (split requests, a transfer or a refund of everything while a request is held): a 4-node group with no
 * load of its own whose replicas check each request's maxFee against the client's balance in their ledger,
 * and requests a client signs for that group, stamped with the simulator's time.
 */
import {
  hex,
  type KeyPair,
  requestIdOf,
  type SignedRequest,
  sha256,
  signRequest,
} from '../../src/protocol/index.ts';
import { Simulation } from '../../src/sim/world.ts';

/**
 * A 4-node group with no requests of its own, every certificate kept, each replica's funds those its
 * ledger holds; `gid` its group, `client` the genesis client and `all` that client's whole balance.
 */
export function fundedSimulation(opts: { seed: number; maxTimeMs: number }): {
  s: Simulation;
  gid: Uint8Array;
  client: KeyPair;
  all: number;
} {
  const s = new Simulation({
    nodes: 4,
    requests: 0,
    seed: opts.seed,
    keepAllCertificates: true,
    maxTimeMs: opts.maxTimeMs,
  });
  for (const node of s.nodes) node.replica.fundsOf = (c) => node.ledger.balanceOf(c);
  const client = s.group.client;
  return {
    s,
    gid: s.nodes[0].replica.groupId,
    client,
    all: s.nodes[0].ledger.balanceOf(client.publicKey),
  };
}

/** A request `who` signs for the group of `s` (input the UTF-8 of `text`, no policy), stamped now. */
export function requestOf(
  s: Simulation,
  who: KeyPair,
  nonce: number,
  text: string,
  maxFee: number,
): SignedRequest {
  const input = new TextEncoder().encode(text);
  return signRequest(
    {
      groupId: s.nodes[0].replica.groupId,
      client: who.publicKey,
      nonce,
      timestamp: Math.floor(s.now),
      inputDigest: sha256(input),
      policy: null,
      maxFee,
    },
    input,
    who,
  );
}

/** requestOf, made one of the simulation's own requests (s.requests), so that the checks count its certificate. */
export function simRequest(...args: Parameters<typeof requestOf>): SignedRequest {
  const sr = requestOf(...args);
  args[0].requests.set(hex(requestIdOf(sr)), sr);
  return sr;
}
