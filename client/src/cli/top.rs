//! `kmemctl top`: a live view (ratatui) of the zones against their watermarks,
//! buddyinfo per order, the slab caches, the cgroups against their limits, and the
//! allocation and failure rates, redrawn every --interval. Keys: `q` quits, `s` cycles
//! the slab sort, `z`/`a`/`r`/`n` sort by size/active/rate/name.
//! Without a terminal (or with --once) it prints one frame as text.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kmem_allocator::ByteSize;
use kmem_client::{Client, Error, pb};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::parse_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    /// Memory held by the cache's slabs.
    Size,
    /// Active objects.
    Active,
    /// Allocations per second.
    Rate,
    Name,
}

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// Refresh interval.
    #[arg(short = 'd', long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    #[arg(short = 's', long, value_enum, default_value = "size")]
    pub sort: Sort,
    /// Print one frame as text and exit.
    #[arg(long)]
    pub once: bool,
    /// Caches shown in --once mode.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
}

/// Cgroups shown (each costs a call per refresh).
const MAX_CGROUPS: usize = 8;

struct Snapshot {
    at: Instant,
    caches: Vec<pb::SlabCache>,
    meminfo: Vec<pb::StatEntry>,
    zones: Vec<pb::Zone>,
    cgroups: Vec<pb::Cgroup>,
    pgalloc: u64,
    /// Failure events the server exports: oom kills, and memcg `max`/`oom` events.
    failures: u64,
}

fn stat(e: &[pb::StatEntry], name: &str) -> u64 {
    e.iter()
        .find(|e| e.name == name)
        .map(|e| e.value)
        .unwrap_or(0)
}

async fn snapshot(c: &Client) -> Result<Snapshot, Error> {
    let vm = c.vmstat().await?;
    let mut cgroups = Vec::new();
    for path in c.list_cgroups().await?.iter().take(MAX_CGROUPS) {
        // A cgroup removed between the two calls is just not shown.
        if let Ok(g) = c.get_cgroup(path).await {
            cgroups.push(g);
        }
    }
    let failures = stat(&vm, "oom_kill")
        + cgroups
            .iter()
            .map(|g| stat(&g.events_local, "max") + stat(&g.events_local, "oom"))
            .sum::<u64>();
    Ok(Snapshot {
        at: Instant::now(),
        caches: c.slab_info().await?,
        meminfo: c.meminfo().await?,
        zones: c.zones().await?,
        cgroups,
        pgalloc: vm
            .iter()
            .filter(|e| e.name.starts_with("pgalloc_"))
            .map(|e| e.value)
            .sum(),
        failures,
    })
}

/// A zone against its watermarks, in pages (as /proc/zoneinfo).
fn zone_line(z: &pb::Zone) -> String {
    let state = if z.free_pages < z.min_pages {
        "BELOW MIN"
    } else if z.free_pages < z.low_pages {
        "below low"
    } else if z.free_pages < z.high_pages {
        "below high"
    } else {
        "ok"
    };
    format!(
        "Node {} {:<8} free {:>9}  min {:>7}  low {:>7}  high {:>7}  boost {:>5}  managed {:>9}  {state}",
        z.node,
        z.name,
        z.free_pages,
        z.min_pages,
        z.low_pages,
        z.high_pages,
        z.boost_pages,
        z.managed_pages
    )
}

/// Free blocks per order, as /proc/buddyinfo.
fn buddy_line(z: &pb::Zone) -> String {
    let orders: String = z
        .free_per_order
        .iter()
        .map(|n| format!(" {n:>6}"))
        .collect();
    format!("Node {}, zone {:>8}{orders}", z.node, z.name)
}

/// A cgroup's usage against memory.max / memory.high.
fn cgroup_line(g: &pb::Cgroup) -> String {
    let limit = |v: Option<u64>| v.map(|b| ByteSize(b).to_string()).unwrap_or("max".into());
    let pct = g
        .max_bytes
        .filter(|m| *m > 0)
        .map(|m| format!("{:>3}%", g.current_bytes * 100 / m))
        .unwrap_or_else(|| "   -".into());
    format!(
        "{:<24} {:>10} / {:<10} {pct}  high {:<10} peak {:<10} max events {}  oom {}",
        g.path,
        ByteSize(g.current_bytes).to_string(),
        limit(g.max_bytes),
        limit(g.high_bytes),
        ByteSize(g.peak_bytes).to_string(),
        stat(&g.events, "max"),
        stat(&g.events, "oom")
    )
}

/// The memory sections: zones, buddyinfo, cgroups (each with a title line).
fn sections(s: &Snapshot) -> Vec<String> {
    let mut v = vec!["ZONES (pages)".to_string()];
    v.extend(s.zones.iter().map(zone_line));
    let orders: String = (0..s.zones.first().map_or(0, |z| z.free_per_order.len()))
        .map(|o| format!(" {:>6}", format!("o{o}")))
        .collect();
    v.push(format!(
        "BUDDYINFO (free blocks per order){:>14}{orders}",
        ""
    ));
    v.extend(s.zones.iter().map(buddy_line));
    v.push("CGROUPS (current / memory.max)".into());
    v.extend(s.cgroups.iter().map(cgroup_line));
    v
}

fn mem(s: &Snapshot, name: &str) -> u64 {
    s.meminfo
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.value)
        .unwrap_or(0)
}

fn cache_bytes(c: &pb::SlabCache) -> u64 {
    c.slabs * u64::from(c.pages_per_slab) * 4096
}

fn kib(v: u64) -> String {
    format!("{}K", v / 1024)
}

/// Header lines and table rows (name, objs, active, use%, objsize, slabs, size, allocs/s).
fn view(
    cur: &Snapshot,
    prev: Option<&Snapshot>,
    sort: Sort,
    refresh: u64,
) -> (Vec<String>, Vec<[String; 8]>) {
    let secs = prev
        .map(|p| cur.at.duration_since(p.at).as_secs_f64())
        .unwrap_or(0.0);
    let rate = |c: &pb::SlabCache| -> f64 {
        let before = prev
            .and_then(|p| p.caches.iter().find(|x| x.name == c.name))
            .map(|x| x.alloc_total)
            .unwrap_or(c.alloc_total);
        if secs > 0.0 {
            c.alloc_total.saturating_sub(before) as f64 / secs
        } else {
            0.0
        }
    };
    let active: u64 = cur.caches.iter().map(|c| c.active_objects).sum();
    let total: u64 = cur.caches.iter().map(|c| c.total_objects).sum();
    let pg_rate = match prev {
        Some(p) if secs > 0.0 => cur.pgalloc.saturating_sub(p.pgalloc) as f64 / secs,
        _ => 0.0,
    };
    let fail_rate = match prev {
        Some(p) if secs > 0.0 => cur.failures.saturating_sub(p.failures) as f64 / secs,
        _ => 0.0,
    };
    let header = vec![
        format!(
            "MemTotal {}  MemFree {}  Slab {}  VmallocUsed {}",
            ByteSize(mem(cur, "MemTotal")),
            kib(mem(cur, "MemFree")),
            kib(mem(cur, "Slab")),
            kib(mem(cur, "VmallocUsed"))
        ),
        format!(
            "Caches {}  Active / Total Objects {active} / {total}  pgalloc {pg_rate:.0}/s  \
             fail {fail_rate:.0}/s (total {})",
            cur.caches.len(),
            cur.failures
        ),
        format!("refresh {refresh}  sort {sort:?}"),
    ];
    let mut cs: Vec<(&pb::SlabCache, f64)> = cur.caches.iter().map(|c| (c, rate(c))).collect();
    match sort {
        Sort::Size => cs.sort_by_key(|(c, _)| std::cmp::Reverse(cache_bytes(c))),
        Sort::Active => cs.sort_by_key(|(c, _)| std::cmp::Reverse(c.active_objects)),
        Sort::Rate => cs.sort_by(|a, b| b.1.total_cmp(&a.1)),
        Sort::Name => cs.sort_by(|a, b| a.0.name.cmp(&b.0.name)),
    }
    let rows = cs
        .into_iter()
        .map(|(c, r)| {
            let usep = (c.active_objects * 100)
                .checked_div(c.total_objects)
                .unwrap_or(0);
            [
                c.name.clone(),
                c.total_objects.to_string(),
                c.active_objects.to_string(),
                format!("{usep}%"),
                format!("{:.2}K", f64::from(c.object_size) / 1024.0),
                c.slabs.to_string(),
                kib(cache_bytes(c)),
                format!("{r:.0}"),
            ]
        })
        .collect();
    (header, rows)
}

const COLUMNS: [&str; 8] = [
    "NAME",
    "OBJS",
    "ACTIVE",
    "USE",
    "OBJ SIZE",
    "SLABS",
    "CACHE SIZE",
    "ALLOC/S",
];

pub async fn run(c: &Client, a: TopArgs) -> Result<(), Error> {
    if a.once || !std::io::stdout().is_terminal() {
        let first = snapshot(c).await?;
        tokio::time::sleep(a.interval.min(Duration::from_secs(1))).await;
        let cur = snapshot(c).await?;
        let (header, rows) = view(&cur, Some(&first), a.sort, 1);
        for h in header.iter().chain(&sections(&cur)) {
            println!("{h}");
        }
        println!();
        println!(
            "{:<24} {:>9} {:>9} {:>4} {:>9} {:>7} {:>11} {:>8}",
            COLUMNS[0],
            COLUMNS[1],
            COLUMNS[2],
            COLUMNS[3],
            COLUMNS[4],
            COLUMNS[5],
            COLUMNS[6],
            COLUMNS[7]
        );
        for r in rows.iter().take(a.lines) {
            println!(
                "{:<24} {:>9} {:>9} {:>4} {:>9} {:>7} {:>11} {:>8}",
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
            );
        }
        return Ok(());
    }
    let io = |e: std::io::Error| Error::Transport(format!("terminal: {e}"));
    let mut term = ratatui::try_init().map_err(io)?;
    let result = interactive(c, &a, &mut term).await;
    ratatui::try_restore().map_err(io)?;
    result
}

async fn interactive(
    c: &Client,
    a: &TopArgs,
    term: &mut ratatui::DefaultTerminal,
) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Transport(format!("terminal: {e}"));
    let mut sort = a.sort;
    let mut prev: Option<Snapshot> = None;
    let mut refresh = 0u64;
    loop {
        let cur = snapshot(c).await?;
        refresh += 1;
        let (header, rows) = view(&cur, prev.as_ref(), sort, refresh);
        let mem = sections(&cur);
        term.draw(|f| {
            let [top, middle, body, foot] = Layout::vertical([
                Constraint::Length(header.len() as u16),
                Constraint::Length(mem.len() as u16),
                Constraint::Min(0),
                Constraint::Length(1),
            ])
            .areas(f.area());
            f.render_widget(Paragraph::new(header.join("\n")), top);
            f.render_widget(Paragraph::new(mem.join("\n")), middle);
            let widths = [
                Constraint::Min(20),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(5),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(11),
                Constraint::Length(8),
            ];
            let table = Table::new(rows.into_iter().map(Row::new), widths)
                .header(Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::REVERSED)))
                .block(Block::new());
            f.render_widget(table, body);
            f.render_widget(
                Paragraph::new(format!(
                    "q: quit   s: next sort ({sort:?})   z/a/r/n: size/active/rate/name"
                )),
                foot,
            );
        })
        .map_err(io)?;
        prev = Some(cur);
        let deadline = Instant::now() + a.interval;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if !event::poll(left.min(Duration::from_millis(100))).map_err(io)? {
                continue;
            }
            if let Event::Key(k) = event::read().map_err(io)? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('s') => {
                        sort = match sort {
                            Sort::Size => Sort::Active,
                            Sort::Active => Sort::Rate,
                            Sort::Rate => Sort::Name,
                            Sort::Name => Sort::Size,
                        };
                        break;
                    }
                    KeyCode::Char(k @ ('z' | 'a' | 'r' | 'n')) => {
                        sort = match k {
                            'z' => Sort::Size,
                            'a' => Sort::Active,
                            'r' => Sort::Rate,
                            _ => Sort::Name,
                        };
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}
