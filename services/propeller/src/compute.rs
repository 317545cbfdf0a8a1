//! The compute a propeller gives its attempts (`--cpus`, `--memory`, `--gpus`) and what its running attempts
//! hold of it. The dispatcher admits an attempt only when its requests fit in what is free, so a task that
//! asks for a GPU on a propeller without one waits, saying so, instead of failing or overcommitting.

use std::collections::HashMap;
use std::hash::Hash;

use aloft_core::compute::ComputeAmounts;
use aloft_core::quantity::human_bytes;

/// What this propeller has to give. CPU and memory left out are not counted (any request fits); GPUs are
/// counted always, so a GPU request on a propeller without `--gpus` waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComputeCapacity {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpus: u32,
}

/// The capacity and what running attempts hold of it, by attempt (`K`: the attempt's key).
#[derive(Debug)]
pub struct ComputeLedger<K> {
    capacity: ComputeCapacity,
    held: HashMap<K, ComputeAmounts>,
    cpu_millis: u64,
    memory_bytes: u64,
    gpus: u32,
}

impl<K: Hash + Eq> ComputeLedger<K> {
    pub fn new(capacity: ComputeCapacity) -> ComputeLedger<K> {
        ComputeLedger {
            capacity,
            held: HashMap::new(),
            cpu_millis: 0,
            memory_bytes: 0,
            gpus: 0,
        }
    }

    /// Why an attempt requesting `wants` cannot start now (the first resource short, what it wants and
    /// what is free), or `None` when it fits.
    pub fn shortage(&self, wants: &ComputeAmounts) -> Option<String> {
        if wants.gpu > 0 && self.gpus + wants.gpu > self.capacity.gpus {
            let free = self.capacity.gpus.saturating_sub(self.gpus);
            return Some(if self.capacity.gpus == 0 {
                format!(
                    "gpu: wants {}, and this propeller has no GPUs (--gpus)",
                    wants.gpu
                )
            } else {
                format!("gpu: wants {}, {free} of {} free", wants.gpu, self.capacity.gpus)
            });
        }
        if let (Some(capacity), Some(want)) = (self.capacity.cpu_millis, wants.cpu_millis) {
            if self.cpu_millis + want > capacity {
                return Some(format!(
                    "cpu: wants {}, {} of {} free",
                    cores(want),
                    cores(capacity.saturating_sub(self.cpu_millis)),
                    cores(capacity)
                ));
            }
        }
        if let (Some(capacity), Some(want)) = (self.capacity.memory_bytes, wants.memory_bytes) {
            if self.memory_bytes + want > capacity {
                return Some(format!(
                    "memory: wants {}, {} of {} free",
                    human_bytes(want),
                    human_bytes(capacity.saturating_sub(self.memory_bytes)),
                    human_bytes(capacity)
                ));
            }
        }
        None
    }

    /// Records that `key` runs holding `wants`.
    pub fn hold(&mut self, key: K, wants: ComputeAmounts) {
        self.cpu_millis += wants.cpu_millis.unwrap_or(0);
        self.memory_bytes += wants.memory_bytes.unwrap_or(0);
        self.gpus += wants.gpu;
        if let Some(earlier) = self.held.insert(key, wants) {
            self.give_back(earlier);
        }
    }

    /// `key` ended: what it held is free again. Says whether it held anything.
    pub fn release(&mut self, key: &K) -> bool {
        match self.held.remove(key) {
            Some(amounts) => {
                self.give_back(amounts);
                amounts != ComputeAmounts::default()
            }
            None => false,
        }
    }

    fn give_back(&mut self, amounts: ComputeAmounts) {
        self.cpu_millis = self.cpu_millis.saturating_sub(amounts.cpu_millis.unwrap_or(0));
        self.memory_bytes = self
            .memory_bytes
            .saturating_sub(amounts.memory_bytes.unwrap_or(0));
        self.gpus = self.gpus.saturating_sub(amounts.gpu);
    }
}

/// Millicores as people write CPUs: `2` or `0.5`.
fn cores(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{}", millis as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(node: usize) -> String {
        format!("e/n{node}/1")
    }

    fn wants(cpu_millis: Option<u64>, memory_bytes: Option<u64>, gpu: u32) -> ComputeAmounts {
        ComputeAmounts {
            cpu_millis,
            memory_bytes,
            gpu,
            ephemeral_storage_bytes: None,
        }
    }

    #[test]
    fn a_gpu_request_without_gpus_waits_saying_so() {
        let ledger: ComputeLedger<String> = ComputeLedger::new(ComputeCapacity::default());
        let shortage = ledger.shortage(&wants(None, None, 1)).unwrap_or_default();
        assert!(shortage.contains("no GPUs"), "{shortage}");
        assert_eq!(
            ledger.shortage(&wants(Some(64_000), Some(1 << 40), 0)),
            None,
            "cpu and memory are not counted by default"
        );
    }

    #[test]
    fn requests_are_admitted_while_they_fit_and_freed_when_they_end() {
        let mut ledger: ComputeLedger<String> = ComputeLedger::new(ComputeCapacity {
            cpu_millis: Some(2_000),
            memory_bytes: Some(4 << 30),
            gpus: 1,
        });
        let big = wants(Some(1_500), Some(1 << 30), 1);
        assert_eq!(ledger.shortage(&big), None);
        ledger.hold(key(1), big);
        let shortage = ledger.shortage(&wants(Some(1_000), None, 0)).unwrap_or_default();
        assert_eq!(shortage, "cpu: wants 1, 0.5 of 2 free");
        let shortage = ledger.shortage(&wants(None, None, 1)).unwrap_or_default();
        assert_eq!(shortage, "gpu: wants 1, 0 of 1 free");
        let shortage = ledger
            .shortage(&wants(None, Some(4 << 30), 0))
            .unwrap_or_default();
        assert_eq!(shortage, "memory: wants 4 GiB, 3 GiB of 4 GiB free");
        assert!(ledger.release(&key(1)));
        assert_eq!(ledger.shortage(&wants(Some(2_000), Some(4 << 30), 1)), None);
        assert!(!ledger.release(&key(1)), "released once");
    }
}
