export { BlkbackVbd, type BlkbackVbdOptions } from './vbd.js';
export { BlkbackQueue, type BlkbackQueueStats } from './queue.js';
export type { BlkbackEnv, BlkbackMapper, BlkbackEvtchn } from './env.js';
