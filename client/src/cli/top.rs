//! `kmemctl top`: a live slabtop-style view (ratatui); `q` quits, `s` changes the sort.
//! Without a terminal (or with --once) it prints one frame as text.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kmem_allocator::ByteSize;
use kmem_client::{pb, Client, Error};
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

struct Snapshot {
    at: Instant,
    caches: Vec<pb::SlabCache>,
    meminfo: Vec<pb::StatEntry>,
    pgalloc: u64,
}

async fn snapshot(c: &Client) -> Result<Snapshot, Error> {
    let vm = c.vmstat().await?;
    Ok(Snapshot {
        at: Instant::now(),
        caches: c.slab_info().await?,
        meminfo: c.meminfo().await?,
        pgalloc: vm
            .iter()
            .filter(|e| e.name.starts_with("pgalloc_"))
            .map(|e| e.value)
            .sum(),
    })
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
fn view(cur: &Snapshot, prev: Option<&Snapshot>, sort: Sort) -> (Vec<String>, Vec<[String; 8]>) {
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
    let header = vec![
        format!(
            "MemTotal {}  MemFree {}  Slab {}  VmallocUsed {}",
            ByteSize(mem(cur, "MemTotal")),
            kib(mem(cur, "MemFree")),
            kib(mem(cur, "Slab")),
            kib(mem(cur, "VmallocUsed"))
        ),
        format!(
            "Caches {}  Active / Total Objects {active} / {total}  pgalloc {pg_rate:.0}/s",
            cur.caches.len()
        ),
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
        let (header, rows) = view(&cur, Some(&first), a.sort);
        for h in header {
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
    loop {
        let cur = snapshot(c).await?;
        let (header, rows) = view(&cur, prev.as_ref(), sort);
        term.draw(|f| {
            let [top, body, foot] = Layout::vertical([
                Constraint::Length(2),
                Constraint::Min(0),
                Constraint::Length(1),
            ])
            .areas(f.area());
            f.render_widget(Paragraph::new(header.join("\n")), top);
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
                Paragraph::new(format!("q: quit   s: sort ({sort:?})   kmemctl top")),
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
                    _ => {}
                }
            }
        }
    }
}
