//! `tagitem.h`: AmigaOS-style tag lists and the `tagList*` helpers.
//!
//! A list is an array of [`TagItem`] ended by `TAG_DONE`. While walking, `TAG_IGNORE` items are
//! invisible, `TAG_SKIP` hides itself and the next `Data` items, and `TAG_MORE` continues in the
//! array its `Data` points to (the rest of the current array is not looked at). Every helper
//! accepts a NULL list. Memory handed out comes from libc `calloc` and is freed with `free`.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

use std::fmt::Write as _;

use super::guard::{guard, write_to_file};

pub type tag_t = libc::c_uint;
pub type tagdata_t = libc::c_ulong;

/// One item of a tag list: 16 bytes on LP64 (Tag at 0, 4 bytes padding, Data at 8).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagItem {
    pub Tag: tag_t,
    pub Data: tagdata_t,
}

pub const TAG_DONE: tag_t = 0;
pub const TAG_END: tag_t = 0;
pub const TAG_IGNORE: tag_t = 1;
pub const TAG_MORE: tag_t = 2;
pub const TAG_SKIP: tag_t = 3;
pub const TAG_USER: tag_t = 1000000;

/// Bound on the items a single walk visits, so a cyclic `TAG_MORE` chain cannot hang a caller.
const MAX_WALK_ITEMS: usize = 1 << 20;
/// A `TAG_SKIP` count above this is taken as garbage and ends the walk.
const MAX_SKIP: tagdata_t = 1 << 16;

/// The first visible item at or after `p`, following IGNORE/SKIP/MORE; NULL at the end.
///
/// # Safety
/// `p` must be NULL or point into a tag list whose chains are valid.
unsafe fn first_visible(mut p: *mut TagItem, budget: &mut usize) -> *mut TagItem {
    while !p.is_null() {
        if *budget == 0 {
            return std::ptr::null_mut();
        }
        *budget -= 1;
        let item = *p;
        match item.Tag {
            TAG_DONE => return std::ptr::null_mut(),
            TAG_IGNORE => p = p.wrapping_add(1),
            TAG_MORE => p = item.Data as *mut TagItem,
            TAG_SKIP => {
                if item.Data > MAX_SKIP {
                    return std::ptr::null_mut();
                }
                p = p.wrapping_add(1 + item.Data as usize);
            }
            _ => return p,
        }
    }
    std::ptr::null_mut()
}

/// Iterator over the visible items of a list.
struct Visible {
    next: *mut TagItem,
    budget: usize,
}

impl Visible {
    /// # Safety
    /// `list` must be NULL or a valid tag list.
    unsafe fn new(list: *mut TagItem) -> Self {
        let mut budget = MAX_WALK_ITEMS;
        let next = first_visible(list, &mut budget);
        Visible { next, budget }
    }
}

impl Iterator for Visible {
    type Item = *mut TagItem;

    fn next(&mut self) -> Option<*mut TagItem> {
        if self.next.is_null() {
            return None;
        }
        let cur = self.next;
        // SAFETY: `cur` is a visible item of a valid list; its successor is part of the list.
        self.next = unsafe { first_visible(cur.wrapping_add(1), &mut self.budget) };
        Some(cur)
    }
}

/// Number of items in this array up to and including its terminator (`TAG_DONE`, or the
/// `TAG_MORE` that ends it); 0 for NULL.
///
/// # Safety
/// `list` must be NULL or a valid tag list.
unsafe fn raw_size(list: *const TagItem) -> usize {
    if list.is_null() {
        return 0;
    }
    let mut n = 0;
    loop {
        let tag = (*list.add(n)).Tag;
        n += 1;
        if tag == TAG_DONE || tag == TAG_MORE || n >= MAX_WALK_ITEMS {
            return n;
        }
    }
}

/// Allocates a zeroed (so `TAG_DONE`-terminated) array of `items` items; NULL on failure.
/// Free it with `tagListFree`.
#[no_mangle]
pub extern "C" fn tagListAllocate(items: usize) -> *mut TagItem {
    guard("tagListAllocate", || {
        // SAFETY: plain libc allocation; calloc checks the multiplication for overflow.
        unsafe { libc::calloc(items.max(1), std::mem::size_of::<TagItem>()).cast() }
    })
}

/// Frees a list from `tagListAllocate` / `tagListDuplicate*`; NULL is fine.
///
/// # Safety
/// `tagList` must be NULL or come from this library's allocating helpers, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tagListFree(tagList: *mut TagItem) {
    guard("tagListFree", || libc::free(tagList.cast()))
}

/// Items in this array including the terminator (`TAG_MORE` is not followed); 0 for NULL.
///
/// # Safety
/// `tagList` must be NULL or a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListGetSize(tagList: *mut TagItem) -> usize {
    guard("tagListGetSize", || raw_size(tagList))
}

/// Shallow copy of this array (a `TAG_MORE` pointer is copied as is). For NULL, a one-item
/// `TAG_DONE` list. NULL only if memory runs out.
///
/// # Safety
/// `tagList` must be NULL or a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListDuplicate(tagList: *mut TagItem) -> *mut TagItem {
    guard("tagListDuplicate", || {
        let n = raw_size(tagList).max(1);
        let copy = tagListAllocate(n);
        if !copy.is_null() && !tagList.is_null() {
            std::ptr::copy_nonoverlapping(tagList, copy, n);
        }
        copy
    })
}

/// A new list with the visible items whose tag appears in `filterArray` (a `TAG_DONE`
/// terminated array of tags), in order, `TAG_DONE` terminated. A NULL filter keeps nothing.
///
/// # Safety
/// `tagList` must be NULL or a valid tag list; `filterArray` NULL or `TAG_DONE` terminated.
#[no_mangle]
pub unsafe extern "C" fn tagListDuplicateFilter(
    tagList: *mut TagItem,
    filterArray: *const tag_t,
) -> *mut TagItem {
    guard("tagListDuplicateFilter", || {
        let mut filter = Vec::new();
        if !filterArray.is_null() {
            let mut i = 0;
            while *filterArray.add(i) != TAG_DONE && i < MAX_WALK_ITEMS {
                filter.push(*filterArray.add(i));
                i += 1;
            }
        }
        let kept: Vec<TagItem> = Visible::new(tagList)
            .map(|p| *p)
            .filter(|item| filter.contains(&item.Tag))
            .collect();
        let copy = tagListAllocate(kept.len() + 1);
        if !copy.is_null() {
            std::ptr::copy_nonoverlapping(kept.as_ptr(), copy, kept.len());
        }
        copy
    })
}

/// The next visible item after `tagList` (an item of a list), or NULL at the end. Given a
/// control item (`TAG_IGNORE`, `TAG_SKIP`, `TAG_MORE`), it returns the first visible item that
/// control item leads to.
///
/// # Safety
/// `tagList` must be NULL or point to an item of a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListNext(tagList: *mut TagItem) -> *mut TagItem {
    guard("tagListNext", || {
        if tagList.is_null() {
            return std::ptr::null_mut();
        }
        let mut budget = MAX_WALK_ITEMS;
        match (*tagList).Tag {
            TAG_DONE => std::ptr::null_mut(),
            TAG_IGNORE | TAG_SKIP | TAG_MORE => first_visible(tagList, &mut budget),
            _ => first_visible(tagList.wrapping_add(1), &mut budget),
        }
    })
}

/// The first visible item with tag `tag`, or NULL.
///
/// # Safety
/// `tagList` must be NULL or a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListFind(tagList: *mut TagItem, tag: tag_t) -> *mut TagItem {
    guard("tagListFind", || {
        Visible::new(tagList)
            .find(|p| (**p).Tag == tag)
            .unwrap_or(std::ptr::null_mut())
    })
}

/// `Data` of the first visible item with tag `tag`, else `defaultValue`.
///
/// # Safety
/// `tagList` must be NULL or a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListGetData(
    tagList: *mut TagItem,
    tag: tag_t,
    defaultValue: tagdata_t,
) -> tagdata_t {
    guard("tagListGetData", || {
        let p = tagListFind(tagList, tag);
        if p.is_null() {
            defaultValue
        } else {
            (*p).Data
        }
    })
}

/// Sets `Data` of the first visible item with tag `tag` and returns it; NULL (and nothing
/// changed) if there is none. Never appends.
///
/// # Safety
/// `tagList` must be NULL or a valid, writable tag list.
#[no_mangle]
pub unsafe extern "C" fn tagListSetData(
    tagList: *mut TagItem,
    tag: tag_t,
    value: tagdata_t,
) -> *mut TagItem {
    guard("tagListSetData", || {
        let p = tagListFind(tagList, tag);
        if !p.is_null() {
            (*p).Data = value;
        }
        p
    })
}

/// Prints the visible items, one per line, to `fd` (nothing for a NULL `fd`).
///
/// # Safety
/// `tagList` must be NULL or a valid tag list; `fd` NULL or an open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn tagListPrint(tagList: *mut TagItem, fd: *mut libc::FILE) {
    guard("tagListPrint", || {
        let mut text = String::new();
        for p in Visible::new(tagList) {
            let item = *p;
            let _ = match item.Tag.checked_sub(TAG_USER) {
                Some(n) => writeln!(
                    text,
                    "Tag=TAG_USER+{n} ({}), Data={} (0x{:x})",
                    item.Tag, item.Data, item.Data
                ),
                None => writeln!(
                    text,
                    "Tag={}, Data={} (0x{:x})",
                    item.Tag, item.Data, item.Data
                ),
            };
        }
        write_to_file(fd, &text);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tag: tag_t, data: tagdata_t) -> TagItem {
        TagItem {
            Tag: tag,
            Data: data,
        }
    }

    #[test]
    fn layout_is_16_bytes() {
        assert_eq!(std::mem::size_of::<TagItem>(), 16);
        assert_eq!(std::mem::offset_of!(TagItem, Data), 8);
    }

    #[test]
    fn walk_honours_ignore_skip_more() {
        let mut tail = [t(TAG_USER + 5, 50), t(TAG_DONE, 0)];
        let mut list = [
            t(TAG_IGNORE, 0),
            t(TAG_USER + 1, 10),
            t(TAG_SKIP, 2),
            t(TAG_USER + 2, 20),
            t(TAG_USER + 3, 30),
            t(TAG_USER + 4, 40),
            t(TAG_MORE, tail.as_mut_ptr() as tagdata_t),
            t(TAG_USER + 9, 90),
            t(TAG_DONE, 0),
        ];
        unsafe {
            let l = list.as_mut_ptr();
            let seen: Vec<tag_t> = Visible::new(l).map(|p| (*p).Tag).collect();
            assert_eq!(seen, vec![TAG_USER + 1, TAG_USER + 4, TAG_USER + 5]);
            assert_eq!(tagListGetData(l, TAG_USER + 2, 7), 7);
            assert_eq!(tagListGetData(l, TAG_USER + 9, 7), 7);
            assert_eq!(tagListGetData(l, TAG_USER + 5, 7), 50);
            assert_eq!(tagListGetSize(l), 7);
            assert!(tagListSetData(l, TAG_USER + 3, 1).is_null());
            assert!(!tagListSetData(l, TAG_USER + 5, 55).is_null());
            assert_eq!(tail[0].Data, 55);
        }
    }

    #[test]
    fn cyclic_more_chain_terminates() {
        let mut list = [t(TAG_MORE, 0), t(TAG_DONE, 0)];
        list[0].Data = list.as_mut_ptr() as tagdata_t;
        unsafe {
            assert!(tagListFind(list.as_mut_ptr(), TAG_USER).is_null());
        }
    }

    #[test]
    fn null_lists_are_empty() {
        unsafe {
            assert_eq!(tagListGetSize(std::ptr::null_mut()), 0);
            assert!(tagListFind(std::ptr::null_mut(), TAG_USER).is_null());
            assert_eq!(tagListGetData(std::ptr::null_mut(), TAG_USER, 3), 3);
            let d = tagListDuplicate(std::ptr::null_mut());
            assert!(!d.is_null());
            assert_eq!((*d).Tag, TAG_DONE);
            tagListFree(d);
        }
    }
}
