export { Blkfront, type BlkfrontOptions } from './device.js';
export type { BlkfrontEnv, BlkfrontGrants, BlkfrontFrames, BlkfrontEvtchn } from './env.js';
