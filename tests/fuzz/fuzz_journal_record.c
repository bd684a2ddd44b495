/*
 * fuzz_journal_record.c - libFuzzer target for the journal's record decoder.
 *
 * Any input must decode or fail cleanly (no crash, no leak, no sanitizer report). A record
 * that decodes must be canonical: encoding the decoded event again gives the very same
 * bytes (the stored hash aside, which decoding does not check). Seeds:
 * tests/fuzz/corpus/journal_record/ (valid records written by test_journal with
 * JNL_WRITE_CORPUS=dir).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jnl_record_t *rec = NULL;
    uint8_t hash[JNL_HASH_LEN];
    bd_err_t err;

    jnl_record_hash(data, size, hash);
    if (jnl_record_decode(data, size, JNL_DECODE_NO_OBJECT, &rec, &err) == 0)
        jnl_record_free(rec);
    if (jnl_record_decode(data, size, 0, &rec, &err) != 0)
        return 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (jnl_record_encode(&rec->ev, rec->ev.seq, rec->ev.time_ns, rec->prev_hash, &buf, &len,
                          &err) != 0)
        abort(); /* decoded but cannot be written back: decoder and encoder disagree */
    if (len != size || memcmp(buf, data, size - JNL_HASH_LEN) != 0)
        abort(); /* not canonical */
    free(buf);
    jnl_record_free(rec);
    return 0;
}
