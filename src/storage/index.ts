// storage: where repository objects live. A small backend contract, the local filesystem backend,
// and openStorage(), which builds the stack (later S3 and replicated) from configured locations.
export * from './backend.js';
export { FsBackend } from './fs-backend.js';
export { ReplicatedBackend } from './replicated-backend.js';
export { openStorage, openLocation, type StorageLocation } from './open-storage.js';
