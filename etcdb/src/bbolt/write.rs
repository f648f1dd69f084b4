//! Writing a compact bbolt file from scratch.

use super::*;

/// The transaction id written in meta page 0; meta page 1 gets one less, as Go's `Tx.WriteTo`
/// does, so bbolt opens meta 0 and its next commit overwrites meta 1.
const TXID: u64 = 2;

/// Writes `db` as a bbolt file of page size [`PAGE_SIZE`] that Go's bbolt opens (and whose
/// `Tx.Check` finds nothing wrong): two meta pages, an empty freelist, every bucket's leaf and
/// branch pages (never inline), values too large for a page in overflow pages, then the root
/// bucket's pages. Keys must be non-empty (bbolt cannot store an empty key).
pub fn write(db: &Db) -> Vec<u8> {
    let mut out = Writer {
        pages: vec![0u8; 3 * PAGE_SIZE],
    };
    write_page_header(&mut out.pages[2 * PAGE_SIZE..], 2, FLAG_FREELIST, 0, 0);
    let mut root_entries = Vec::with_capacity(db.buckets.len());
    for (name, bucket) in &db.buckets {
        assert!(!name.is_empty(), "bbolt bucket names are non-empty");
        let elements: Vec<Element<'_>> = bucket
            .entries
            .iter()
            .map(|(k, v)| {
                assert!(!k.is_empty(), "bbolt keys are non-empty");
                Element {
                    flags: 0,
                    key: k,
                    value: v.clone(),
                }
            })
            .collect();
        let root = out.tree(elements);
        let mut header = vec![0u8; BUCKET_HEADER_LEN];
        header[..8].copy_from_slice(&root.to_le_bytes());
        root_entries.push(Element {
            flags: LEAF_FLAG_BUCKET,
            key: name,
            value: header,
        });
    }
    let root = out.tree(root_entries);
    let page_count = (out.pages.len() / PAGE_SIZE) as u64;
    for id in 0..2u64 {
        let page = &mut out.pages[id as usize * PAGE_SIZE..];
        write_page_header(page, id, FLAG_META, 0, 0);
        let m = &mut page[PAGE_HEADER_LEN..];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        // flags (12..16) and the root bucket's sequence (24..32) stay zero.
        m[16..24].copy_from_slice(&root.to_le_bytes());
        m[32..40].copy_from_slice(&2u64.to_le_bytes());
        m[40..48].copy_from_slice(&page_count.to_le_bytes());
        m[48..56].copy_from_slice(&(TXID - id).to_le_bytes());
        let sum = fnv64a(&m[..META_SUMMED_LEN]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
    }
    debug_assert_eq!(out.pages.len() % PAGE_SIZE, 0);
    debug_assert!(
        read(&out.pages).is_ok_and(|back| back == *db),
        "write must read back as what was written"
    );
    out.pages
}

struct Element<'a> {
    flags: u32,
    key: &'a [u8],
    value: Vec<u8>,
}

impl Element<'_> {
    fn leaf_len(&self) -> usize {
        ELEMENT_LEN + self.key.len() + self.value.len()
    }
}

struct Writer {
    pages: Vec<u8>,
}

impl Writer {
    /// Writes a B+tree holding `elements` (sorted, unique keys) and returns its root page.
    fn tree(&mut self, elements: Vec<Element<'_>>) -> u64 {
        debug_assert!(elements.windows(2).all(|w| w[0].key < w[1].key));
        // Leaves: fill each up to a page; an element alone may overflow onto more pages.
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        for node in pack(&elements, |e| e.leaf_len()) {
            let id = self.leaf(node);
            level.push((node.first().map(|e| e.key.to_vec()).unwrap_or_default(), id));
        }
        // Branches until one page holds them all.
        while level.len() > 1 {
            let mut up = Vec::new();
            for node in pack(&level, |(k, _)| ELEMENT_LEN + k.len()) {
                let id = self.branch(node);
                up.push((node[0].0.clone(), id));
            }
            level = up;
        }
        level[0].1
    }

    /// Appends a node of `len` bytes (rounded up to whole pages) and returns its first page
    /// id and its bytes.
    fn alloc(&mut self, len: usize) -> (u64, &mut [u8]) {
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let start = self.pages.len();
        self.pages.resize(start + pages * PAGE_SIZE, 0);
        ((start / PAGE_SIZE) as u64, &mut self.pages[start..])
    }

    fn leaf(&mut self, node: &[Element<'_>]) -> u64 {
        let len = PAGE_HEADER_LEN + node.iter().map(Element::leaf_len).sum::<usize>();
        let (id, page) = self.alloc(len);
        let overflow = (len.div_ceil(PAGE_SIZE).max(1) - 1) as u32;
        write_page_header(page, id, FLAG_LEAF, node.len(), overflow);
        let mut data = PAGE_HEADER_LEN + node.len() * ELEMENT_LEN;
        for (i, e) in node.iter().enumerate() {
            let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
            put_u32(page, at, e.flags);
            put_u32(page, at + 4, (data - at) as u32);
            put_u32(page, at + 8, e.key.len() as u32);
            put_u32(page, at + 12, e.value.len() as u32);
            page[data..data + e.key.len()].copy_from_slice(e.key);
            data += e.key.len();
            page[data..data + e.value.len()].copy_from_slice(&e.value);
            data += e.value.len();
        }
        debug_assert_eq!(data, len);
        id
    }

    fn branch(&mut self, node: &[(Vec<u8>, u64)]) -> u64 {
        let len = PAGE_HEADER_LEN
            + node
                .iter()
                .map(|(k, _)| ELEMENT_LEN + k.len())
                .sum::<usize>();
        let (id, page) = self.alloc(len);
        let overflow = (len.div_ceil(PAGE_SIZE).max(1) - 1) as u32;
        write_page_header(page, id, FLAG_BRANCH, node.len(), overflow);
        let mut data = PAGE_HEADER_LEN + node.len() * ELEMENT_LEN;
        for (i, (key, child)) in node.iter().enumerate() {
            let at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
            put_u32(page, at, (data - at) as u32);
            put_u32(page, at + 4, key.len() as u32);
            page[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
            page[data..data + key.len()].copy_from_slice(key);
            data += key.len();
        }
        id
    }
}

/// Splits `items` into consecutive nodes of at most one page each; an item too large for a
/// page gets a node (and overflow pages) of its own. Never returns no node: an empty tree is
/// one empty leaf. A node also holds at most u16::MAX elements (the header's count).
fn pack<T>(items: &[T], len: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut nodes = Vec::new();
    let mut start = 0;
    let mut used = PAGE_HEADER_LEN;
    for (i, item) in items.iter().enumerate() {
        let l = len(item);
        let count = i - start;
        if count > 0 && (used + l > PAGE_SIZE || count == usize::from(u16::MAX)) {
            nodes.push(&items[start..i]);
            start = i;
            used = PAGE_HEADER_LEN;
        }
        used += l;
    }
    if start < items.len() || nodes.is_empty() {
        nodes.push(&items[start..]);
    }
    nodes
}

fn write_page_header(page: &mut [u8], id: u64, flags: u16, count: usize, overflow: u32) {
    let count = u16::try_from(count).expect("a node holds at most u16::MAX elements");
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
}

fn put_u32(page: &mut [u8], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
