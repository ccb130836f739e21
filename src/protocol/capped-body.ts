/**
 * A fetch Response's body read with a bound on its size, for answers from a party not trusted to keep it
 * small (a remote model server, a node serving the dashboard). A Content-Length over the bound is refused
 * before any of the body is read; a body that runs past it (no length, a false one, or compressed) is
 * cancelled there, so the rest is never downloaded. `tooLarge` makes the caller's error: `bytes` is the
 * declared length, or the count read when the bound was passed (`declared` false).
 */
export async function readCapped(
  res: Response,
  maxBytes: number,
  tooLarge: (bytes: number, declared: boolean) => Error,
): Promise<Uint8Array> {
  // Of a compressed answer the length is the compressed size: a lower bound, so only a refusal is certain.
  const length = res.headers.get('content-length');
  const declared = length === null ? Number.NaN : Number(length);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge(declared, true);
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(total, false);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.byteLength;
  }
  return body;
}
