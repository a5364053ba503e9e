import { defineConfig } from 'vitest/config';

// Forks, not threads: the addon's external ArrayBuffers and uv watchers belong to one process.
// Integration tests (test/) start real domains and share the host's netns/TAP namespace, so
// files run one at a time; unit tests are fast enough that this costs little.
export default defineConfig({
  test: {
    pool: 'forks',
    fileParallelism: false,
    include: ['src/**/*.test.ts', 'domains/**/*.test.ts', 'iommu/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
