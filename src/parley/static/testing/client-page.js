// Exposes the client on window for tests and the console; sets `parleyReady` once loaded.
import { ConnectionState, ParleyClient, ParleyError } from "../client.js";

Object.assign(window, { ParleyClient, ParleyError, ConnectionState, parleyReady: true });
