//! The standard `process_*` metrics (CPU, memory, file descriptors, threads, start time), read
//! from `/proc/self` on each scrape with the same names and meanings as Prometheus' Go and
//! Python clients, so the dashboards and alerts written for those work unchanged.
//!
//! Linux only (`/proc`); elsewhere the collector reports nothing. A `/proc` that cannot be
//! read (a sandbox hiding it) also reports nothing rather than failing the scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reports this process's `process_*` metrics on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    #[cfg(target_os = "linux")]
    system: Option<linux::System>,
}

impl ProcessCollector {
    /// Reads what does not change while the process runs (clock ticks, page size, boot time).
    pub fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            system: linux::System::read(),
        }
    }
}

/// One scrape's values.
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time_seconds: f64,
    threads: i64,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        #[cfg(target_os = "linux")]
        let sample = self.system.as_ref().and_then(linux::System::sample);
        #[cfg(not(target_os = "linux"))]
        let sample: Option<Sample> = None;
        let Some(s) = sample else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<f64>); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(s.resident_bytes as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(s.virtual_bytes as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                Some(s.start_time_seconds),
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                Some(s.threads as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use procfs::process::{LimitValue, Process};

    use super::Sample;

    /// Constants of the running system.
    #[derive(Debug)]
    pub(super) struct System {
        ticks_per_second: f64,
        page_size: i64,
        boot_time_secs: f64,
    }

    impl System {
        pub(super) fn read() -> Option<Self> {
            match procfs::boot_time_secs() {
                Ok(boot) => Some(Self {
                    ticks_per_second: procfs::ticks_per_second() as f64,
                    page_size: procfs::page_size() as i64,
                    boot_time_secs: boot as f64,
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "no process metrics: cannot read /proc/stat");
                    None
                }
            }
        }

        pub(super) fn sample(&self) -> Option<Sample> {
            let me = Process::myself().ok()?;
            let stat = match me.stat() {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "no process metrics: cannot read /proc/self/stat");
                    return None;
                }
            };
            let max_fds = me
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    LimitValue::Value(v) => i64::try_from(v).ok(),
                    LimitValue::Unlimited => None,
                });
            Some(Sample {
                cpu_seconds: (stat.utime + stat.stime) as f64 / self.ticks_per_second,
                resident_bytes: stat.rss as i64 * self.page_size,
                virtual_bytes: i64::try_from(stat.vsize).unwrap_or(i64::MAX),
                start_time_seconds: self.boot_time_secs
                    + stat.starttime as f64 / self.ticks_per_second,
                threads: stat.num_threads,
                open_fds: me.fd_count().ok().and_then(|n| i64::try_from(n).ok()),
                max_fds,
            })
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reports_this_process() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(out.contains("# TYPE process_cpu_seconds counter"), "{out}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
        // A test binary holds at least a few MiB resident and has threads and descriptors.
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
