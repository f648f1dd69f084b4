//! Reading a bbolt file. Every offset and count comes from untrusted bytes: each is checked
//! before use, trees are walked with a depth limit and every page may be used once.

use super::*;
use crate::{Error, Result};

/// Deeper trees than this are refused (a 4 KiB-page tree of this depth would hold more keys
/// than any file can); it bounds the recursion on hostile input.
const TREE_DEPTH_MAX: usize = 32;

/// Called with each leaf element's key, flags and value, in key order.
type Visit<'v> = dyn FnMut(&[u8], u32, &[u8]) -> Result<()> + 'v;

/// Reads a bbolt database. `bytes` is the whole file, and may be longer than the database
/// (a file grown ahead of use); a snapshot's SHA-256 trailer must be cut off first.
///
/// Takes the valid meta page with the highest transaction id, as bbolt does, and checks every
/// page it visits: in bounds, of the expected type, used once, keys sorted. Reads the freelist
/// when there is one and refuses a page both free and in use.
pub fn read(bytes: &[u8]) -> Result<Db> {
    read_with_layout(bytes).map(|(db, _)| db)
}

/// Validates the meta pages only, and tells the page size and count of the meta page that
/// [`read()`] would use.
pub fn layout(bytes: &[u8]) -> Result<Layout> {
    let meta = choose_meta(bytes)?;
    Ok(Layout {
        page_size: meta.page_size,
        page_count: meta.page_count,
        txid: meta.txid,
    })
}

/// [`read()`], and the [`layout`] too.
pub fn read_with_layout(bytes: &[u8]) -> Result<(Db, Layout)> {
    let meta = choose_meta(bytes)?;
    let mut pages = Pages {
        bytes,
        page_size: meta.page_size as usize,
        page_count: meta.page_count,
        used: vec![false; usize::try_from(meta.page_count).unwrap_or(usize::MAX)],
    };
    pages.claim(0, 0)?;
    pages.claim(1, 0)?;
    if meta.freelist != NO_FREELIST {
        let free = pages.freelist(meta.freelist)?;
        for id in free {
            pages.claim(id, 0)?;
        }
    }
    let mut root = BTreeMap::new();
    pages.tree(meta.root, 0, &mut |key, flags, value| {
        if flags & LEAF_FLAG_BUCKET == 0 {
            return Err(corrupt(meta.root, "a plain value in the root bucket"));
        }
        root.insert(key.to_vec(), value.to_vec());
        Ok(())
    })?;
    let mut db = Db::default();
    for (name, header) in root {
        let mut bucket = Bucket::default();
        pages.bucket(&name, &header, &mut bucket)?;
        db.buckets.insert(name, bucket);
    }
    let layout = Layout {
        page_size: meta.page_size,
        page_count: meta.page_count,
        txid: meta.txid,
    };
    Ok((db, layout))
}

fn corrupt(page: u64, what: &'static str) -> Error {
    Error::Corrupt { page, what }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    page_count: u64,
    txid: u64,
}

/// The meta page at `offset`, if it is one bbolt would accept.
fn meta_at(bytes: &[u8], offset: usize, page_id: u64) -> std::result::Result<Meta, &'static str> {
    let end = offset
        .checked_add(PAGE_HEADER_LEN + META_SUMMED_LEN + 8)
        .ok_or("offset overflow")?;
    let page = bytes
        .get(offset..end)
        .ok_or("file too short for a meta page")?;
    let m = &page[PAGE_HEADER_LEN..];
    if u32_at(m, 0) != MAGIC {
        return Err("invalid magic number");
    }
    if u32_at(m, 4) != VERSION {
        return Err("version mismatch");
    }
    if u64_at(m, META_SUMMED_LEN) != fnv64a(&m[..META_SUMMED_LEN]) {
        return Err("checksum error");
    }
    if u16_at(page, 8) & FLAG_META == 0 || u64_at(page, 0) != page_id {
        return Err("not a meta page");
    }
    let page_size = u32_at(m, 8);
    if !(1024..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err("unsupported page size");
    }
    Ok(Meta {
        page_size,
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        page_count: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

fn choose_meta(bytes: &[u8]) -> Result<Meta> {
    let meta0 = meta_at(bytes, 0, 0);
    // Meta 1 sits one page in: trust meta 0's page size, else try the usual ones as bbolt does.
    let sizes: Vec<usize> = match &meta0 {
        Ok(m) => vec![m.page_size as usize],
        Err(_) => vec![4096, 8192, 16384, 65536],
    };
    let meta1 = sizes
        .iter()
        .map(|&size| meta_at(bytes, size, 1).and_then(|m| page_size_is(m, size)))
        .find(|m| m.is_ok())
        .unwrap_or(Err("no valid meta page 1"));
    let meta = match (meta0, meta1) {
        (Ok(a), Ok(b)) => {
            if b.txid > a.txid {
                b
            } else {
                a
            }
        }
        (Ok(a), Err(_)) => a,
        (Err(_), Ok(b)) => b,
        (Err(e), Err(_)) => return Err(Error::NoValidMeta(e)),
    };
    let size_bytes = meta
        .page_count
        .checked_mul(u64::from(meta.page_size))
        .ok_or(Error::NoValidMeta("page count overflows"))?;
    if meta.page_count < 3 || size_bytes > bytes.len() as u64 {
        return Err(Error::NoValidMeta("page count beyond the end of the file"));
    }
    if meta.root < 2 || meta.root >= meta.page_count {
        return Err(Error::NoValidMeta("root page out of bounds"));
    }
    if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.page_count) {
        return Err(Error::NoValidMeta("freelist page out of bounds"));
    }
    Ok(meta)
}

fn page_size_is(m: Meta, size: usize) -> std::result::Result<Meta, &'static str> {
    if m.page_size as usize == size {
        Ok(m)
    } else {
        Err("page size differs between the meta pages")
    }
}

struct Pages<'a> {
    bytes: &'a [u8],
    page_size: usize,
    page_count: u64,
    /// Pages already claimed by a tree, the freelist or the metas.
    used: Vec<bool>,
}

impl<'a> Pages<'a> {
    /// Marks `id` and its overflow pages as used; a page used twice is corruption.
    fn claim(&mut self, id: u64, overflow: u32) -> Result<()> {
        let last = id
            .checked_add(u64::from(overflow))
            .filter(|&last| last < self.page_count)
            .ok_or(corrupt(id, "out of bounds"))?;
        for p in id..=last {
            let slot = &mut self.used[p as usize];
            if *slot {
                return Err(corrupt(p, "multiple references"));
            }
            *slot = true;
        }
        Ok(())
    }

    /// The bytes of page `id` with its overflow pages, after checking its header and claiming it.
    fn page(&mut self, id: u64) -> Result<&'a [u8]> {
        if id >= self.page_count {
            return Err(corrupt(id, "out of bounds"));
        }
        let start = id as usize * self.page_size;
        let header = self
            .bytes
            .get(start..start + PAGE_HEADER_LEN)
            .ok_or(corrupt(id, "out of bounds"))?;
        if u64_at(header, 0) != id {
            return Err(corrupt(id, "page id mismatch"));
        }
        let overflow = u32_at(header, 12);
        self.claim(id, overflow)?;
        let len = (overflow as usize + 1) * self.page_size;
        let bytes: &'a [u8] = self.bytes;
        Ok(&bytes[start..start + len])
    }

    fn freelist(&mut self, id: u64) -> Result<Vec<u64>> {
        let page = self.page(id)?;
        if u16_at(page, 8) & FLAG_FREELIST == 0 {
            return Err(corrupt(id, "freelist page of the wrong type"));
        }
        let mut count = usize::from(u16_at(page, 10));
        let mut at = PAGE_HEADER_LEN;
        if count == usize::from(FREELIST_COUNT_IN_BODY) {
            count = usize::try_from(u64_at(page, at)).unwrap_or(usize::MAX);
            at += 8;
        }
        let ids_len = count
            .checked_mul(8)
            .filter(|len| at + len <= page.len())
            .ok_or(corrupt(id, "freelist longer than its page"))?;
        Ok(page[at..at + ids_len]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Reads the bucket `name` from its header into `out`.
    fn bucket(&mut self, name: &[u8], header: &[u8], out: &mut Bucket) -> Result<()> {
        if header.len() < BUCKET_HEADER_LEN {
            return Err(corrupt(0, "bucket header too short"));
        }
        let root = u64_at(header, 0);
        let mut visit = |key: &[u8], flags: u32, value: &[u8]| {
            if flags & LEAF_FLAG_BUCKET != 0 {
                return Err(Error::NestedBucket {
                    bucket: name.to_vec(),
                    key: key.to_vec(),
                });
            }
            out.entries.insert(key.to_vec(), value.to_vec());
            Ok(())
        };
        if root == 0 {
            // An inline bucket: a leaf page follows the header inside the value.
            let page = &header[BUCKET_HEADER_LEN..];
            if page.len() < PAGE_HEADER_LEN || u16_at(page, 8) & FLAG_LEAF == 0 {
                return Err(corrupt(0, "inline bucket is not a leaf page"));
            }
            let mut last = None;
            leaf_elements(page, 0, &mut last, &mut visit)
        } else {
            self.tree(root, 0, &mut visit)
        }
    }

    /// Visits the leaf elements under page `id` in key order.
    fn tree(&mut self, id: u64, depth: usize, visit: &mut Visit<'_>) -> Result<()> {
        let mut last = None;
        self.tree_from(id, depth, &mut last, visit)
    }

    fn tree_from(
        &mut self,
        id: u64,
        depth: usize,
        last: &mut Option<Vec<u8>>,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        if depth > TREE_DEPTH_MAX {
            return Err(corrupt(id, "tree too deep"));
        }
        let page = self.page(id)?;
        let flags = u16_at(page, 8);
        if flags & FLAG_LEAF != 0 {
            return leaf_elements(page, id, last, visit);
        }
        if flags & FLAG_BRANCH == 0 {
            return Err(corrupt(id, "invalid type: neither branch nor leaf"));
        }
        let count = usize::from(u16_at(page, 10));
        if count == 0 {
            return Err(corrupt(id, "empty branch page"));
        }
        for i in 0..count {
            let elem = element(page, id, i)?;
            let child = u64_at(elem, 8);
            self.tree_from(child, depth + 1, last, visit)?;
        }
        Ok(())
    }
}

/// Element `i` of branch or leaf page `id`.
fn element(page: &[u8], id: u64, i: usize) -> Result<&[u8]> {
    let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
    page.get(at..at + ELEMENT_LEN)
        .ok_or(corrupt(id, "elements beyond the page"))
}

/// Visits a leaf page's elements, checking that keys strictly increase after `last`.
fn leaf_elements(
    page: &[u8],
    id: u64,
    last: &mut Option<Vec<u8>>,
    visit: &mut Visit<'_>,
) -> Result<()> {
    let count = usize::from(u16_at(page, 10));
    for i in 0..count {
        let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
        let elem = element(page, id, i)?;
        let flags = u32_at(elem, 0);
        let pos = u32_at(elem, 4) as usize;
        let key_len = u32_at(elem, 8) as usize;
        let value_len = u32_at(elem, 12) as usize;
        let key_at = at.checked_add(pos);
        let value_at = key_at.and_then(|k| k.checked_add(key_len));
        let end = value_at.and_then(|v| v.checked_add(value_len));
        let (Some(key_at), Some(value_at), Some(end)) = (key_at, value_at, end) else {
            return Err(corrupt(id, "element beyond the page"));
        };
        if end > page.len() {
            return Err(corrupt(id, "element beyond the page"));
        }
        let key = &page[key_at..value_at];
        if key.is_empty() {
            return Err(corrupt(id, "empty key"));
        }
        if last.as_deref().is_some_and(|l| l >= key) {
            return Err(corrupt(id, "keys out of order"));
        }
        visit(key, flags, &page[value_at..end])?;
        *last = Some(key.to_vec());
    }
    Ok(())
}
