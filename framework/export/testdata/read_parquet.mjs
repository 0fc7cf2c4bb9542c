// Reads a Parquet file with hyparquet (a reader independent of the exporter) and prints it as JSON:
// {"schema": [{name, type, repetition, logical}], "rows": [[...], ...]}, INT64 values as {"i": "digits"}.
// usage: node read_parquet.mjs HYPARQUET_INSTALL_DIR FILE
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const [dir, file] = process.argv.slice(2)
const hp = await import(pathToFileURL(createRequire(dir + '/').resolve('hyparquet')).href)
const buf = await hp.asyncBufferFromFile(file)
const meta = await hp.parquetMetadataAsync(buf)
const schema = meta.schema.slice(1).map(e => ({
  name: e.name,
  type: e.type,
  repetition: e.repetition_type,
  logical: e.logical_type?.type ?? e.converted_type ?? null,
}))
const objs = await hp.parquetReadObjects({ file: buf, metadata: meta })
const rows = objs.map(o => schema.map(c => o[c.name] ?? null))
process.stdout.write(JSON.stringify({ schema, rows, numRows: Number(meta.num_rows) },
  (_, v) => typeof v === 'bigint' ? { i: v.toString() } : v))
