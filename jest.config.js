/** One jest run covers every package's tests and the cross-package suites in test/. */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }],
  },
  moduleNameMapper: {
    // ES-module sources import their siblings as './name.js' (what Node's ESM needs at run time).
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^@ws-heartbeat/(core|fastify|express|client|protocol|cluster)$': '<rootDir>/packages/$1/src/index.ts',
  },
  testTimeout: 60_000,
};
