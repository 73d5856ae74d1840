//! Integration tests: the real server over HTTP and websocket, on SQLite + in-process
//! stores and on PostgreSQL + Redis.
mod helpers;

mod access;
mod appointments;
mod audit;
mod auth;
mod billing;
mod browser_session;
mod console;
mod corrections;
mod hostile;
mod hostile_access;
mod live;
mod matrix;
mod messages;
mod patients;
mod persisted;
mod platform;
mod queries;
mod record_statements;
mod records;
