/** The fields every node config needs (paths relative to its file), with the stand-in model. */
export const MINIMAL_NODE_CONFIG = {
  id: 0,
  genesis: 'genesis.json',
  key: 'keys/node-0.json',
  data: 'data/node-0',
  p2p: { host: '127.0.0.1', port: 7100 },
  api: { host: '127.0.0.1', port: 8100 },
  model: { standin: true },
};
