//! The procfs texts against real Linux 6.18 output (`shared/data/proc-samples`).
//!
//! Values differ between machines, so each line is compared with its numbers masked:
//! a run of spaces and digits becomes the same number of `#`, which keeps every
//! column and padding decision visible while ignoring the digits themselves.

use std::path::PathBuf;

use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

fn sample(name: &str) -> Option<String> {
    // The samples live beside the repository (../shared) in development and CI.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for base in [
        "../../shared/data/proc-samples",
        "../shared/data/proc-samples",
    ] {
        let p = here.join(base).join(name);
        if let Ok(s) = std::fs::read_to_string(&p) {
            return Some(s);
        }
    }
    None
}

fn mask(line: &str) -> String {
    let mut out = String::new();
    let b: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let mut j = i;
        while j < b.len() && b[j] == ' ' {
            j += 1;
        }
        let k0 = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let ends_field = j == b.len() || !b[j].is_ascii_alphanumeric();
        if j > k0 && ends_field {
            out.extend(std::iter::repeat_n('#', j - i));
            i = j;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A machine shaped like the sample's: 2 CPUs, DMA + DMA32 + Normal, ~24 GiB.
fn machine() -> Machine {
    let m = Machine::boot(MachineConfig {
        memory: ByteSize::gib(24),
        ..Default::default()
    })
    .unwrap();
    // Some activity so counters are not all zero.
    let c = AllocContext::on_cpu(1);
    for o in 0..4 {
        let b = m.alloc_pages(Gfp::GFP_KERNEL, o, &c).unwrap();
        m.free_pages_on(b.pfn, o, &c).unwrap();
    }
    m
}

fn compare_masked(ours: &str, theirs: &str, what: &str) {
    let a: Vec<String> = ours.lines().map(mask).collect();
    let b: Vec<String> = theirs.lines().map(mask).collect();
    assert_eq!(a.len(), b.len(), "{what}: line count\nours:\n{ours}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            x,
            y,
            "{what} line {}:\nours:   {:?}\ntheirs: {:?}",
            i + 1,
            ours.lines().nth(i),
            theirs.lines().nth(i)
        );
    }
    assert_eq!(
        ours.ends_with('\n'),
        theirs.ends_with('\n'),
        "{what}: final newline"
    );
}

#[test]
fn buddyinfo_matches_the_kernel_format() {
    let Some(s) = sample("buddyinfo.txt") else {
        return;
    };
    compare_masked(&machine().proc_file("buddyinfo").unwrap(), &s, "buddyinfo");
}

#[test]
fn pagetypeinfo_matches_the_kernel_format() {
    let Some(s) = sample("pagetypeinfo.txt") else {
        return;
    };
    compare_masked(
        &machine().proc_file("/proc/pagetypeinfo").unwrap(),
        &s,
        "pagetypeinfo",
    );
}

#[test]
fn meminfo_matches_the_kernel_format() {
    let Some(s) = sample("meminfo.txt") else {
        return;
    };
    let ours = machine().proc_file("meminfo").unwrap();
    compare_masked(&ours, &s, "meminfo");
    // VmallocTotal is a constant of the architecture.
    assert!(ours.contains("VmallocTotal:   34359738367 kB\n"));
}

#[test]
fn vmstat_has_the_kernel_names_in_order() {
    let Some(s) = sample("vmstat.txt") else {
        return;
    };
    let ours = machine().proc_file("vmstat").unwrap();
    let names = |t: &str| {
        t.lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&s));
    for l in ours.lines() {
        let mut it = l.split(' ');
        it.next();
        it.next().unwrap().parse::<u64>().unwrap();
        assert!(it.next().is_none(), "{l}");
    }
    assert_eq!(ours.lines().last(), Some("nr_unstable 0"));
}

#[test]
fn proc_samples_are_present_in_ci() {
    // In CI the shared folder sits beside the clone; make sure the comparisons ran.
    if std::env::var_os("CI").is_some() {
        assert!(
            sample("buddyinfo.txt").is_some(),
            "shared/data/proc-samples not found"
        );
    }
}

#[test]
fn buddyinfo_counts_are_the_free_lists() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap();
    let text = m.proc_file("buddyinfo").unwrap();
    // Bare 1 GiB: DMA [0,16M) = 4 order-10 blocks; DMA32 [16M,1G) = 252.
    assert_eq!(
        text,
        "Node 0, zone      DMA      0      0      0      0      0      0      0      0      0      0      4 \n\
         Node 0, zone    DMA32      0      0      0      0      0      0      0      0      0      0    252 \n"
    );
    let b = m
        .alloc_pages(Gfp::GFP_KERNEL | Gfp::DMA32, 10, &AllocContext::on_cpu(0))
        .unwrap();
    assert!(m.proc_file("buddyinfo").unwrap().contains("    251 \n"));
    let _ = b;
}

#[test]
fn zoneinfo_shape() {
    let m = machine();
    let z = m.proc_file("zoneinfo").unwrap();
    // Five zones per node; the empty ones stop after protection.
    assert_eq!(z.matches("Node 0, zone").count(), 5);
    assert!(z.starts_with("Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 0\n"));
    assert!(z.contains(
        "Node 0, zone  Movable\n  pages free     0\n        boost    0\n        min      32\n"
    ));
    assert!(
        z.contains("\n        protection: (0, 0, 0, 0, 0)\nNode 0, zone   Device\n")
            || z.contains("Node 0, zone   Device\n")
    );
    assert!(z.contains("\n  pagesets\n    cpu: 0\n              count:    "));
    assert!(z.contains("\n  node_unreclaimable:  0\n  start_pfn:           1\n"));
    assert!(z.ends_with(")\n"), "the last zone (Device) is empty");
    let dma = m.zone(0, kmem_allocator::ZoneType::Dma);
    assert!(z.contains(&format!(
        "        spanned  {}\n        present  {}\n        managed  {}\n",
        dma.spanned, dma.present, dma.managed
    )));
}
