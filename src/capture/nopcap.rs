//! The packet source of a build without libpcap (the static binary): every attempt to
//! capture or read a capture says so, plainly. Everything else works.

use std::path::Path;

use super::packet::{CaptureStats, CaptureWarning, Next, Truncation};
use super::{CaptureConfig, CaptureError};

/// No packet source can exist in this build.
pub enum PacketSource {}

fn not_built(what: &str) -> CaptureError {
    CaptureError::NotInThisBuild {
        what: what.to_string(),
    }
}

impl PacketSource {
    pub fn open_live(_config: &CaptureConfig) -> Result<Self, CaptureError> {
        Err(not_built("live capture"))
    }

    pub fn open_file(_path: impl AsRef<Path>, _filter: Option<&str>) -> Result<Self, CaptureError> {
        Err(not_built("reading capture files"))
    }

    pub fn set_filter(&mut self, _filter: &str) -> Result<(), CaptureError> {
        match *self {}
    }

    pub fn kernel_filter_length(&self) -> Option<u32> {
        None
    }

    pub fn linktype(&self) -> i32 {
        match *self {}
    }

    pub fn is_live(&self) -> bool {
        match *self {}
    }

    pub fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        match *self {}
    }

    pub fn warnings(&self) -> &[CaptureWarning] {
        match *self {}
    }

    pub fn truncated(&self) -> Option<&Truncation> {
        match *self {}
    }

    pub fn stats(&mut self) -> Option<CaptureStats> {
        match *self {}
    }
}

/// The interface of the default route cannot be asked of libpcap here.
pub fn default_interface() -> Result<String, CaptureError> {
    Err(not_built("live capture"))
}
