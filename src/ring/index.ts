export { FrontRing } from './front.js';
export { BackRing } from './back.js';
export {
  RingFaultError,
  sharedRingInit,
  sharedRingSetIndices,
  sharedRingIndices,
  needsNotify,
  type RingFaultCode,
  type RingRegion,
  type RingAttachOptions,
} from './sring.js';
