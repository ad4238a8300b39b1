//! Reading and writing the bytes of allocated pages by physical address.
//!
//! Only pages inside an allocated block may be touched: touching a free page is the
//! simulator's "use after free", reported as an error instead of silently corrupting.

use crate::machine::Machine;
use crate::page::{PageKind, Pfn, PAGE_SIZE};

/// A refused access.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhysError {
    #[error("physical address {addr:#x} is not inside an allocated block (pfn {pfn:#x})")]
    NotAllocated { addr: u64, pfn: Pfn },
    #[error("access of {len} bytes at {addr:#x} runs past the end of physical memory")]
    OutOfRange { addr: u64, len: usize },
}

impl PhysError {
    pub fn reason(&self) -> &'static str {
        match self {
            PhysError::NotAllocated { .. } => "ADDRESS_NOT_ALLOCATED",
            PhysError::OutOfRange { .. } => "ADDRESS_OUT_OF_RANGE",
        }
    }
}

impl Machine {
    fn check_range(&self, addr: u64, len: usize) -> Result<(), PhysError> {
        let end = addr
            .checked_add(len as u64)
            .filter(|&e| e <= self.pages().nr_pages() * PAGE_SIZE)
            .ok_or(PhysError::OutOfRange { addr, len })?;
        let mut pfn = addr / PAGE_SIZE;
        while pfn * PAGE_SIZE < end {
            match self.block_containing(pfn) {
                Some((head, w)) if w.kind() == PageKind::Alloc => {
                    pfn = head + (1 << w.order());
                }
                _ => {
                    return Err(PhysError::NotAllocated {
                        addr: addr.max(pfn * PAGE_SIZE),
                        pfn,
                    })
                }
            }
        }
        Ok(())
    }

    /// Write bytes at a physical address; every page touched must be allocated.
    pub fn write_phys(&self, addr: u64, data: &[u8]) -> Result<(), PhysError> {
        self.check_range(addr, data.len())?;
        let mut off = 0;
        while off < data.len() {
            let a = addr + off as u64;
            let in_page = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - off);
            self.content
                .write(a / PAGE_SIZE, in_page, &data[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// Read bytes at a physical address; never-written bytes read as zero.
    pub fn read_phys(&self, addr: u64, len: usize) -> Result<Vec<u8>, PhysError> {
        self.check_range(addr, len)?;
        let mut out = vec![0u8; len];
        let mut off = 0;
        while off < len {
            let a = addr + off as u64;
            let in_page = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(len - off);
            self.content
                .read(a / PAGE_SIZE, in_page, &mut out[off..off + n]);
            off += n;
        }
        Ok(out)
    }
}
