//! The flow sequence of the synthetic captures (shared by the benchmark and
//! examples/gen_capture): runs of 1 to 16 packets of one flow, flows chosen by a fixed
//! linear congruential generator so every run is the same.

/// Yields the flow of each packet, out of `flows`.
pub struct FlowRuns {
    x: u64,
    flow: usize,
    run: usize,
    flows: usize,
}

impl FlowRuns {
    pub fn new(flows: usize) -> Self {
        Self {
            x: 0x9e37_79b9_7f4a_7c15,
            flow: 0,
            run: 0,
            flows: flows.max(1),
        }
    }
}

impl Iterator for FlowRuns {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.run == 0 {
            self.x = self
                .x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.flow = (self.x >> 33) as usize % self.flows;
            self.run = 1 + (self.x >> 20) as usize % 16;
        }
        self.run -= 1;
        Some(self.flow)
    }
}
