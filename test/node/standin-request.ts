/** A client request for the stand-in models (src/node/standin-backend.ts), as the node tests send them. */
import { standInInput } from '../../src/node/standin-backend.ts';
import { type Request, type SignedRequest, sha256, signRequest } from '../../src/protocol/index.ts';
import type { makeGroup } from '../../src/sim/world.ts';

/** Request number `nonce` of the group's client, timestamped now (or `timestamp`), signed alone. */
export function standInRequest(
  group: ReturnType<typeof makeGroup>,
  groupId: Uint8Array,
  nonce: number,
  timestamp = Date.now(),
): SignedRequest {
  const input = standInInput(nonce);
  const request: Request = {
    groupId,
    client: group.client.publicKey,
    nonce,
    timestamp,
    inputDigest: sha256(input),
    policy: null,
    maxFee: 1_000_000,
  };
  return signRequest(request, input, group.client);
}
