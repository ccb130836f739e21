/** node:module for the browser bundle: nothing to require (protocol/crypto.ts then runs without libsodium). */
export function createRequire(_url: string): (id: string) => never {
  return (id) => {
    throw new Error(`${id} is not available in the browser`);
  };
}
