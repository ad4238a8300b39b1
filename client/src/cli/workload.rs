//! What the load generator sends: operations, size distributions, and the three
//! transports (unary calls, Batch, one [`Session`] stream per connection).

use clap::ValueEnum;
use kmem_allocator::PAGE_SIZE;
use kmem_allocator::slab::PAGE_OFFSET;
use kmem_client::pb::{self, operation::Op};
use kmem_client::{Client, Error, Opts, Session};
use serde::{Deserialize, Serialize};

/// `--op`: the operation each request performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// kmalloc (freed per --hold, the free not timed).
    Kmalloc,
    /// kmalloc then kfree, both timed as one request.
    KmallocFree,
    /// alloc_pages --order.
    AllocPages,
    Vmalloc,
    Kvmalloc,
    /// The no-op round trip.
    Ping,
    /// kmem_cache_alloc from a cache of --size objects (created for the run).
    Cache,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// One RPC per operation.
    Unary,
    /// --batch-size operations per Batch RPC.
    Batch,
    /// Operations over one bidirectional Session stream per connection.
    Session,
}

/// One allocating (or ping) operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Work {
    Ping,
    Kmalloc { size: u64 },
    AllocPages { order: u32 },
    Vmalloc { size: u64 },
    Kvmalloc { size: u64 },
    CacheAlloc { cache: String },
}

/// Something live, and how to free it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Live {
    Kfree { addr: u64 },
    FreePages { pfn: u64, order: u32 },
    Vfree { addr: u64 },
    Kvfree { addr: u64 },
    CacheFree { cache: String, addr: u64 },
}

impl Live {
    pub fn addr(&self) -> u64 {
        match self {
            Live::Kfree { addr }
            | Live::Vfree { addr }
            | Live::Kvfree { addr }
            | Live::CacheFree { addr, .. } => *addr,
            Live::FreePages { pfn, .. } => *pfn,
        }
    }
    /// The address the generic `Free` call takes (a page block's direct-map address).
    pub fn free_addr(&self) -> u64 {
        match self {
            Live::FreePages { pfn, .. } => PAGE_OFFSET + pfn * PAGE_SIZE,
            l => l.addr(),
        }
    }
    /// The same object at a different address (trace replay).
    pub fn with_addr(&self, a: u64) -> Live {
        let mut l = self.clone();
        match &mut l {
            Live::Kfree { addr }
            | Live::Vfree { addr }
            | Live::Kvfree { addr }
            | Live::CacheFree { addr, .. } => *addr = a,
            Live::FreePages { pfn, .. } => *pfn = a,
        }
        l
    }
}

impl Work {
    fn op(&self, o: &pb::AllocOptions) -> Op {
        let options = Some(o.clone());
        match self {
            Work::Ping => Op::Ping(Box::new(pb::PingRequest {})),
            Work::Kmalloc { size } => Op::Kmalloc(Box::new(pb::KmallocRequest {
                size: *size,
                options,
                zero: false,
            })),
            Work::AllocPages { order } => Op::AllocPages(Box::new(pb::AllocPagesRequest {
                order: *order,
                options,
            })),
            Work::Vmalloc { size } => Op::Vmalloc(Box::new(pb::VmallocRequest {
                size: *size,
                kind: 0,
                options,
            })),
            Work::Kvmalloc { size } => Op::Kvmalloc(Box::new(pb::KvmallocRequest {
                size: *size,
                options,
                zero: false,
            })),
            Work::CacheAlloc { cache } => Op::CacheAlloc(Box::new(pb::CacheAllocRequest {
                cache: cache_ref(cache),
                options,
                zero: false,
            })),
        }
    }

    /// How to free what this returned.
    pub fn live(&self, a: &pb::Allocation) -> Option<Live> {
        Some(match self {
            Work::Ping => return None,
            Work::Kmalloc { .. } => Live::Kfree { addr: a.addr },
            Work::AllocPages { order } => Live::FreePages {
                pfn: a.pfn.unwrap_or_default(),
                order: *order,
            },
            Work::Vmalloc { .. } => Live::Vfree { addr: a.addr },
            Work::Kvmalloc { .. } => Live::Kvfree { addr: a.addr },
            Work::CacheAlloc { cache } => Live::CacheFree {
                cache: cache.clone(),
                addr: a.addr,
            },
        })
    }

    async fn unary(&self, c: &Client, o: &Opts) -> Result<Option<Live>, Error> {
        let a = match self {
            Work::Ping => return c.ping().await.map(|_| None),
            Work::Kmalloc { size } => c.kmalloc(*size, o).await?,
            Work::AllocPages { order } => c.alloc_pages(*order, o).await?,
            Work::Vmalloc { size } => c.vmalloc(*size, pb::VmallocKind::Unspecified, o).await?,
            Work::Kvmalloc { size } => c.kvmalloc(*size, false, o).await?,
            Work::CacheAlloc { cache } => c.cache_alloc(cache, false, o).await?,
        };
        Ok(self.live(&a))
    }
}

fn cache_ref(cache: &str) -> Option<pb::CacheRef> {
    Some(pb::CacheRef {
        cache: Some(pb::cache_ref::Cache::Name(cache.to_string())),
    })
}

impl Live {
    /// The free operation, run on `cpu` when the workload pins one.
    fn op(&self, cpu: Option<u32>) -> Op {
        match self {
            Live::Kfree { addr } => Op::Kfree(Box::new(pb::KfreeRequest {
                addr: *addr,
                sensitive: false,
                cpu,
            })),
            Live::FreePages { pfn, order } => Op::FreePages(Box::new(pb::FreePagesRequest {
                pfn: *pfn,
                addr: 0,
                order: *order,
                cpu,
            })),
            Live::Vfree { addr } => Op::Vfree(Box::new(pb::VfreeRequest { addr: *addr, cpu })),
            Live::Kvfree { addr } => Op::Kvfree(Box::new(pb::KvfreeRequest {
                addr: *addr,
                sensitive_len: 0,
                cpu,
            })),
            Live::CacheFree { cache, addr } => Op::CacheFree(Box::new(pb::CacheFreeRequest {
                cache: cache_ref(cache),
                addr: *addr,
                cpu,
            })),
        }
    }

    async fn unary(&self, c: &Client, cpu: Option<u32>) -> Result<(), Error> {
        if cpu.is_some() {
            return c.free_on(self.free_addr(), cpu).await.map(|_| ());
        }
        match self {
            Live::Kfree { addr } => c.kfree(*addr).await,
            Live::FreePages { pfn, order } => c.free_pages(*pfn, *order).await,
            Live::Vfree { addr } => c.vfree(*addr).await,
            Live::Kvfree { addr } => c.kvfree(*addr).await,
            Live::CacheFree { cache, addr } => c.cache_free(cache, *addr).await,
        }
    }
}

/// `--size` / `--size-dist`.
#[derive(Clone, Debug)]
pub enum SizeDist {
    Fixed(u64),
    Uniform(u64, u64),
    /// (object size, cumulative weight) from a real kernel's /proc/slabinfo.
    Weighted(Vec<(u64, u64)>),
}

/// /proc/slabinfo of a real 6.18 machine (client/data/slabinfo.txt).
const SLABINFO: &str = include_str!("../../data/slabinfo.txt");

impl SizeDist {
    pub fn parse(s: &str) -> Result<SizeDist, String> {
        let size = super::parse_size;
        if s == "slabinfo" {
            return Ok(SizeDist::slabinfo());
        }
        if let Some(n) = s.strip_prefix("fixed:") {
            return size(n).map(SizeDist::Fixed);
        }
        if let Some(r) = s.strip_prefix("uniform:") {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| format!("bad range `{r}`: write uniform:16-4096"))?;
            let (a, b) = (size(a)?, size(b)?);
            if a > b {
                return Err(format!("empty range `{r}`"));
            }
            return Ok(SizeDist::Uniform(a, b));
        }
        Err(format!(
            "bad size distribution `{s}`: fixed:N, uniform:A-B or slabinfo"
        ))
    }

    /// Object sizes weighted by their live-object counts.
    pub fn slabinfo() -> SizeDist {
        let mut cum = 0;
        let mut v = Vec::new();
        for line in SLABINFO.lines().skip(2) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(active), Some(objsize)) = (
                f.get(1).and_then(|x| x.parse::<u64>().ok()),
                f.get(3).and_then(|x| x.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if active > 0 && objsize > 0 {
                cum += active;
                v.push((objsize, cum));
            }
        }
        SizeDist::Weighted(v)
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(a, b) => a + rng.next() % (b - a + 1),
            SizeDist::Weighted(v) => {
                let total = v.last().map(|x| x.1).unwrap_or(1);
                let r = rng.next() % total;
                let i = v.partition_point(|x| x.1 <= r);
                v.get(i).map(|x| x.0).unwrap_or(64)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SizeDist::Fixed(n) => format!("fixed:{n}"),
            SizeDist::Uniform(a, b) => format!("uniform:{a}-{b}"),
            SizeDist::Weighted(v) => format!("slabinfo ({} caches)", v.len()),
        }
    }
}

/// splitmix64: enough randomness for sizes, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A connection and the transport used over it.
pub enum Conn {
    Unary(Client),
    Batch(Client),
    Session(Client, Session),
}

fn result(w: &Work, r: &pb::OperationResult) -> Result<Option<Live>, Error> {
    if let Some(e) = r.status.as_ref().and_then(Error::from_rpc_status) {
        return Err(e);
    }
    Ok(r.allocation.as_ref().and_then(|a| w.live(a)))
}

fn status_only(r: &pb::OperationResult) -> Result<(), Error> {
    match r.status.as_ref().and_then(Error::from_rpc_status) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Conn {
    pub async fn open(c: Client, t: Transport) -> Result<Conn, Error> {
        Ok(match t {
            Transport::Unary => Conn::Unary(c),
            Transport::Batch => Conn::Batch(c),
            Transport::Session => {
                let s = Session::open(&c).await?;
                Conn::Session(c, s)
            }
        })
    }

    pub fn client(&self) -> &Client {
        match self {
            Conn::Unary(c) | Conn::Batch(c) | Conn::Session(c, _) => c,
        }
    }

    /// Run allocations; one result each.
    pub async fn exec(&self, works: &[Work], o: &Opts) -> Vec<Result<Option<Live>, Error>> {
        match self {
            Conn::Unary(c) => {
                let mut out = Vec::with_capacity(works.len());
                for w in works {
                    out.push(w.unary(c, o).await);
                }
                out
            }
            Conn::Batch(c) => {
                let opts = o.to_pb();
                let r = pb::BatchRequest {
                    operations: works
                        .iter()
                        .map(|w| pb::Operation {
                            op: Some(w.op(&opts)),
                        })
                        .collect(),
                    defaults: Some(opts.clone()),
                    stop_on_error: false,
                };
                match c.batch(r).await {
                    Ok(rs) => works.iter().zip(&rs).map(|(w, r)| result(w, r)).collect(),
                    Err(e) => works.iter().map(|_| Err(e.clone())).collect(),
                }
            }
            Conn::Session(_, s) => {
                let opts = o.to_pb();
                let mut out = Vec::with_capacity(works.len());
                for w in works {
                    out.push(match s.call(w.op(&opts)).await {
                        Ok(r) => result(w, &r),
                        Err(e) => Err(e),
                    });
                }
                out
            }
        }
    }

    /// Free (on `cpu` when given); returns how many frees failed.
    pub async fn free(&self, lives: Vec<Live>, cpu: Option<u32>) -> u64 {
        if lives.is_empty() {
            return 0;
        }
        let mut failed = 0;
        match self {
            Conn::Unary(c) => {
                for l in &lives {
                    failed += u64::from(l.unary(c, cpu).await.is_err());
                }
            }
            Conn::Batch(c) => {
                let r = pb::BatchRequest {
                    operations: lives
                        .iter()
                        .map(|l| pb::Operation {
                            op: Some(l.op(cpu)),
                        })
                        .collect(),
                    defaults: None,
                    stop_on_error: false,
                };
                match c.batch(r).await {
                    Ok(rs) => {
                        failed += rs.iter().filter(|r| status_only(r).is_err()).count() as u64
                    }
                    Err(_) => failed += lives.len() as u64,
                }
            }
            Conn::Session(_, s) => {
                for l in &lives {
                    let ok = matches!(s.call(l.op(cpu)).await.map(|r| status_only(&r)), Ok(Ok(())));
                    failed += u64::from(!ok);
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dists() {
        let d = SizeDist::slabinfo();
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let s = d.sample(&mut r);
            assert!(s > 0 && s <= 1 << 22, "{s}");
        }
        let u = SizeDist::parse("uniform:16-32").unwrap();
        for _ in 0..100 {
            assert!((16..=32).contains(&u.sample(&mut r)));
        }
        assert!(matches!(
            SizeDist::parse("fixed:4KiB"),
            Ok(SizeDist::Fixed(4096))
        ));
        assert!(SizeDist::parse("nope").is_err());
    }
}
