export * from './test-env.js';
export * from './database.js';
export * from './stack.js';
export * from './books.js';
export * from './replica.js';
