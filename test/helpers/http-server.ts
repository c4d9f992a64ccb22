/** The stand-in lives in src/sandbox, shared with `npm run demo`. */
export * from '../../src/sandbox/stand-ins/http-server.js';
