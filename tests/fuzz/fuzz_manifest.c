/*
 * Fuzz the YAML/JSON-to-model path: document parsing, validation with defaulting, and
 * the typed model, exactly as `bindy validate` and local mode run them. The first byte
 * picks YAML or JSON.
 */
#include <stddef.h>
#include <stdint.h>

#include "doc.h"
#include "resource.h"
#include "validate.h"

static val_catalog_t *cat;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cat == NULL && val_catalog_new(&cat, NULL) != BD_OK)
        __builtin_trap();
    if (size == 0)
        return 0;
    int is_json = data[0] & 1;
    doc_list_t *list = NULL;
    if (doc_load_buffer("fuzz", (const char *)data + 1, size - 1, is_json, &list, NULL) != BD_OK)
        return 0;
    val_report_t rep;
    val_report_init(&rep);
    for (size_t i = 0; i < doc_list_count(list); i++) {
        const doc_t *d = doc_list_get(list, i);
        val_report_reset(&rep);
        int rc = val_check(cat, doc_value(d), &rep);
        for (size_t j = 0; j < rep.n; j++)
            (void)doc_line(d, rep.items[j].path);
        if (rc == BD_OK && val_classify(cat, json_string_value(json_object_get(doc_value(d), "apiVersion")),
                                        json_string_value(json_object_get(doc_value(d), "kind"))) ==
                               VAL_CLASS_OURS) {
            res_t *res = NULL;
            /* validation accepted it, so the typed model must too */
            if (res_from_json(doc_value(d), &res, NULL) != BD_OK)
                __builtin_trap();
            res_free(res);
        }
    }
    val_report_deinit(&rep);
    doc_list_free(list);
    return 0;
}
