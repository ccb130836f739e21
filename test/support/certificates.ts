/**
 * A certificate built by hand for one request in a batch of its own (the tests that need one without running
 * a group): every genesis node votes, the first q keys sign the receipt.
 */
import { decide } from '../../src/agreement/index.ts';
import { buildCertificates } from '../../src/certificate/index.ts';
import {
  buildTree,
  type Certificate,
  type CountedVote,
  encode,
  type Genesis,
  type GenesisNode,
  groupIdOf,
  type KeyPair,
  leafHash,
  Outcome,
  type Policy,
  quorumSize,
  receiptHashOf,
  sha256,
  signReceiptAs,
} from '../../src/protocol/index.ts';

export interface OneCertificate {
  cert: Certificate;
  outcome: Outcome;
  /** The nodes whose receipt signatures it carries. */
  signers: number[];
}

/**
 * Request `tag` (its id, input digest and batch digest made from the tag) of `client`, at seq `tag`, under
 * `genesis`, signed with `keys` (node i's key at i). Each node votes `values`, with the model `modelDigest`
 * gives it (default its genesis model).
 */
export function certificateOfOne(
  genesis: Genesis,
  keys: KeyPair[],
  client: KeyPair,
  tag: number,
  o: { policy: Policy; values: number[]; modelDigest?: (n: GenesisNode) => Uint8Array },
): OneCertificate {
  const gid = groupIdOf(genesis);
  const votes: CountedVote[] = genesis.nodes.map((n) => ({
    node: n.id,
    modelDigest: o.modelDigest?.(n) ?? n.modelDigest,
    result: { kind: 'vector', values: o.values },
  }));
  const outcome: Outcome = {
    requestId: sha256(new Uint8Array([tag])),
    client: client.publicKey,
    inputDigest: sha256(new Uint8Array([tag, 1])),
    policy: o.policy,
    votes,
    decision: decide(
      o.policy,
      votes.map((v) => v.result),
    ),
    fee: 1,
  };
  const tree = buildTree([leafHash(encode(Outcome, outcome))]);
  const receipt = {
    groupId: gid,
    seq: tag,
    batchDigest: sha256(new Uint8Array([tag, 2])),
    prevReceipt: new Uint8Array(32),
    resultsRoot: tree.root,
    resultsCount: 1,
  };
  const q = quorumSize(genesis.nodes.length, genesis.f);
  const sigs = keys.slice(0, q).map((k, node) => ({
    node,
    signature: signReceiptAs(gid, receipt, receiptHashOf(receipt), null, k),
    view: null,
  }));
  const [cert] = buildCertificates([outcome], tree, receipt, sigs, q);
  return { cert, outcome, signers: sigs.map((s) => s.node) };
}
