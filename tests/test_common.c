/*  test_common.c: refs, sizes, the ref map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "refmap.h"

#include <stdlib.h>
#include <string.h>

static void test_ref_text_round_trips(void **state)
{
    shoal_ref_t r = shoal_ref_make(0x0123456789abcdefull, 0xba9876543210ull, 7);
    char text[SHOAL_REF_TEXT_SIZE];
    assert_string_equal(shoal_ref_format(r, text), "0123456789abcdefba98765432100007");
    shoal_ref_t back;
    assert_int_equal(shoal_ref_parse(text, &back), 0);
    assert_true(shoal_ref_equal(r, back));
    assert_int_equal(shoal_ref_index(back), 7);
    assert_true(shoal_ref_equal(shoal_ref_task(back), shoal_ref_output(back, 0)));
}

static void test_ref_parse_rejects_bad_text(void **state)
{
    shoal_ref_t r;
    assert_int_equal(shoal_ref_parse("", &r), SHOAL_EINVAL);
    assert_int_equal(shoal_ref_parse("0123456789abcdefba9876543210000", &r), SHOAL_EINVAL);
    assert_int_equal(shoal_ref_parse("0123456789abcdefba987654321000070", &r), SHOAL_EINVAL);
    assert_int_equal(shoal_ref_parse("0123456789abcdefba9876543210000g", &r), SHOAL_EINVAL);
    assert_int_equal(shoal_ref_parse(NULL, &r), SHOAL_EINVAL);
}

static void test_parse_size_understands_suffixes(void **state)
{
    uint64_t v;
    assert_int_equal(shoal__parse_size("64K", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(shoal__parse_size("256M", &v), 0);
    assert_int_equal(v, 256ull << 20);
    assert_int_equal(shoal__parse_size("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(shoal__parse_size("12", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(shoal__parse_size("12X", &v), SHOAL_EINVAL);
    assert_int_equal(shoal__parse_size("-1", &v), SHOAL_EINVAL);
    assert_int_equal(shoal__parse_size("99999999999T", &v), SHOAL_EINVAL);
}

static void test_strerror_names_every_code(void **state)
{
    assert_string_equal(shoal_strerror(SHOAL_EFULL), "store full");
    assert_string_equal(shoal_strerror(1234), "unknown error");
    for (int c = -1; c >= SHOAL_ETOOBIG; c--)
        assert_string_not_equal(shoal_strerror(c), "unknown error");
}

static void test_refmap_survives_many_inserts_and_removes(void **state)
{
    shoal__refmap_t *map = shoal__refmap_new();
    assert_non_null(map);
    enum { N = 100000 };
    static int values[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(shoal__refmap_put(map, shoal_ref_make(42, (uint64_t)i, 0), &values[i]), 0);
    assert_int_equal(shoal__refmap_size(map), N);
    //  Remove every other entry; the rest must still be found (backward-shift deletion).
    for (int i = 0; i < N; i += 2)
        assert_ptr_equal(shoal__refmap_remove(map, shoal_ref_make(42, (uint64_t)i, 0)), &values[i]);
    for (int i = 0; i < N; i++) {
        void *v = shoal__refmap_get(map, shoal_ref_make(42, (uint64_t)i, 0));
        if (i % 2)
            assert_ptr_equal(v, &values[i]);
        else
            assert_null(v);
    }
    size_t cursor = 0, seen = 0;
    void *v;
    while (shoal__refmap_next(map, &cursor, NULL, &v))
        seen++;
    assert_int_equal(seen, N / 2);
    assert_null(shoal__refmap_remove(map, shoal_ref_make(43, 1, 0)));
    shoal__refmap_destroy(&map);
    assert_null(map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_text_round_trips),
        cmocka_unit_test(test_ref_parse_rejects_bad_text),
        cmocka_unit_test(test_parse_size_understands_suffixes),
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_refmap_survives_many_inserts_and_removes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
