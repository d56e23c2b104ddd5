//! The integration tests: one crate, one module per area, sharing `common` (the fake
//! Plex server, capture writers and a command builder).

mod common;

mod attribute;
mod capture_decode;
mod capture_fixtures;
mod capture_live;
mod capture_tunnels;
mod cli;
mod contrib;
mod daemon;
mod daemon_loop;
mod demo;
mod edges;
mod history;
mod hook;
mod hook_notify;
mod image;
mod layering;
mod meter_windows;
mod notify;
mod plex_bandwidth;
mod plex_client;
mod plex_parse;
mod reach;
mod replay;
mod rules;
mod rules_props;
mod shape;
mod state;
mod surface;
mod throttle_live;
mod trust;
mod usage_live;
mod view;
