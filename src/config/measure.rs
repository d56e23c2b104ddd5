//! The `[measure]` table: where streams' rates come from.

/// Where a stream's measured rate comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MeasureSource {
    /// Packets Plex sends, captured on the wire (the default).
    #[default]
    Packets,
    /// Plex's own per-second counters (`/statistics/bandwidth`, Plex Pass); no capture.
    Plex,
    /// Packets first; Plex's counters where packets have no figure for a stream, and to
    /// split several viewers behind one address.
    Both,
}

impl MeasureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureSource::Packets => "packets",
            MeasureSource::Plex => "plex",
            MeasureSource::Both => "both",
        }
    }

    /// Packets are captured.
    pub fn packets(self) -> bool {
        self != MeasureSource::Plex
    }

    /// Plex's counters are read.
    pub fn plex(self) -> bool {
        self != MeasureSource::Packets
    }
}

/// The `[measure]` table, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasureConfig {
    pub source: MeasureSource,
}

/// `[measure]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeasure {
    source: Option<toml::Spanned<String>>,
}

impl RawMeasure {
    pub(super) fn resolve(
        self,
        source: &super::SourceMap,
    ) -> Result<MeasureConfig, super::ConfigError> {
        let Some(s) = self.source else {
            return Ok(MeasureConfig::default());
        };
        let value = match s.get_ref().trim() {
            "packets" => MeasureSource::Packets,
            "plex" => MeasureSource::Plex,
            "both" => MeasureSource::Both,
            other => {
                return Err(source.error(
                    Some(s.span()),
                    format!(
                        "source: {other:?} is not a source: write \"packets\" (captured, the default), \"plex\" (Plex's own counters, Plex Pass, no capture) or \"both\""
                    ),
                ));
            }
        };
        Ok(MeasureConfig { source: value })
    }
}
