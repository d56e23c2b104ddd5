//! The capture thread: reads a packet source until told to stop and hands every packet to a
//! sink. `run` feeds the daemon's meter with it; nothing here knows what a meter is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CaptureStats, Next, Packet, PacketSource};

/// Where captured packets go.
pub trait PacketSink: Send + 'static {
    fn packet(&mut self, p: &Packet<'_>);
    /// The capture's own statistics (kernel drops), about twice a second.
    fn capture_stats(&mut self, stats: Option<CaptureStats>);
}

/// A running capture thread.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Feeder {
    /// Starts reading `source` into `sink` on a thread of its own.
    pub fn spawn(mut source: PacketSource, mut sink: impl PacketSink) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut n: u32 = 0;
                while !flag.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    match source.next_packet() {
                        Ok(Next::Packet(p)) => {
                            sink.packet(&p);
                            // The clock is read every 1024 packets, not per packet.
                            if !n.is_multiple_of(1024) {
                                continue;
                            }
                        }
                        Ok(Next::Idle) => {}
                        Ok(Next::Eof) => break,
                        Err(e) => {
                            tracing::error!("capture stopped: {e}");
                            break;
                        }
                    }
                    if last.elapsed() >= Duration::from_millis(500) {
                        last = Instant::now();
                        sink.capture_stats(source.stats());
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and waits for it (it notices within the source's idle timeout).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}
