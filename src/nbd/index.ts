export { NbdServer, type NbdServerOptions, type NbdExport } from './server.js';
