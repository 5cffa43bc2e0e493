"""The node's model cache (issue 17): registry entries fetched, verified and laid out for the
engines, under STATE_DIR/models or --model-cache DIR (the engines' ${GPUFLEET_MODEL_CACHE}).

  layout.py   where things live: the files and hf layouts, part files; names checked
  index.py    ROOT/entries/ENTRY.json per entry (atomic): what the agent reports
  sources.py  where bytes come from: presigned URLs (aiohttp) or RegistryFetch.Download
  fetch.py    one file: resume the good prefix, chunks checked as they land, rename
  sink.py     its part file's threads: hash, write and fdatasync behind the download
  space.py    the free-space check before a fetch, --cache-reserve sizes
  store.py    the cache as a whole: recovery, what uses an entry, removal
  protos.py   CachedEntry, CachesReport and CacheReport, one place
"""
