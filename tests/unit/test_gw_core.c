/*
 * test_gw_core.c - the gateway's data structures: frame buffers, the
 * connection table, the group table and the deadline queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"
#include "gw_clients.h"
#include "gw_conntab.h"
#include "gw_group.h"
#include "gw_send.h"
#include "gw_timeq.h"
#include "unit.h"

UNIT_TEST(gw_buf_frame_lengths) {
  char payload[70000];
  memset(payload, 'a', sizeof(payload));
  gw_buf *b = gw_buf_frame(1, payload, 5);
  UNIT_CHECK(b->len == 7 && b->data[0] == 0x81 && b->data[1] == 5);
  gw_buf_unref(b);
  b = gw_buf_frame(2, payload, 126);
  UNIT_CHECK(b->len == 130 && b->data[0] == 0x82 && b->data[1] == 126 &&
             b->data[2] == 0 && b->data[3] == 126);
  gw_buf_unref(b);
  b = gw_buf_frame(1, payload, 65535);
  UNIT_CHECK(b->len == 65539 && b->data[1] == 126 && b->data[2] == 0xff && b->data[3] == 0xff);
  gw_buf_unref(b);
  b = gw_buf_frame(1, payload, 65536);
  UNIT_CHECK(b->len == 65546 && b->data[1] == 127 && b->data[7] == 1 && b->data[8] == 0 &&
             b->data[9] == 0);
  gw_buf_unref(b);
}

UNIT_TEST(gw_buf_refcount) {
  gw_buf *b = gw_buf_frame(1, "x", 1);
  gw_buf_ref(b);
  gw_buf_ref(b);
  UNIT_CHECK(b->refs == 3);
  gw_buf_unref(b);
  gw_buf_unref(b);
  UNIT_CHECK(b->refs == 1);
  gw_buf_unref(b); /* freed: ASan would report a leak otherwise */
}

UNIT_TEST(gw_conntab_put_get_del_grow) {
  gw_conntab t;
  UNIT_CHECK(gw_conntab_init(&t) == 0);
  static int dummy[5000];
  for (uint64_t id = 1; id <= 5000; id++) UNIT_CHECK(gw_conntab_put(&t, id, &dummy[id - 1]) == 0);
  UNIT_CHECK(t.cap >= 10000);
  for (uint64_t id = 1; id <= 5000; id += 2) gw_conntab_del(&t, id);
  int ok = 1;
  for (uint64_t id = 1; id <= 5000; id++) {
    void *p = gw_conntab_get(&t, id);
    ok &= (id % 2) ? p == NULL : p == &dummy[id - 1];
  }
  UNIT_CHECK(ok);
  UNIT_CHECK(t.used == 2500);
  UNIT_CHECK(gw_conntab_get(&t, 999999) == NULL);
  gw_conntab_free(&t);
}

typedef struct {
  char log[4096];
} bind_log;

static void on_first(const char *name, void *arg) {
  bind_log *l = arg;
  strcat(l->log, "+");
  strcat(l->log, name);
}

static void on_last(const char *name, void *arg) {
  bind_log *l = arg;
  strcat(l->log, "-");
  strcat(l->log, name);
}

UNIT_TEST(gw_group_bind_on_first_unbind_on_last) {
  bind_log l = {{0}};
  gw_group_table t;
  UNIT_CHECK(gw_group_table_init(&t, on_first, on_last, &l) == 0);
  int a, b;
  gw_member *ma = gw_group_join(&t, "jobs-status_changed", &a);
  gw_member *mb = gw_group_join(&t, "jobs-status_changed", &b);
  gw_member *mc = gw_group_join(&t, "job_events-42", &a);
  UNIT_CHECK_STR(l.log, "+jobs-status_changed+job_events-42");
  gw_group *g = gw_group_find(&t, "jobs-status_changed", strlen("jobs-status_changed"));
  UNIT_CHECK(g && g->n_members == 2);
  gw_group_leave(&t, ma, 0);
  UNIT_CHECK_STR(l.log, "+jobs-status_changed+job_events-42");
  gw_group_leave(&t, mb, 0);
  UNIT_CHECK_STR(l.log, "+jobs-status_changed+job_events-42-jobs-status_changed");
  UNIT_CHECK(gw_group_find(&t, "jobs-status_changed", strlen("jobs-status_changed")) == NULL);
  UNIT_CHECK(t.n_groups == 1 && t.n_members == 1);
  gw_group_leave(&t, mc, 0);
  UNIT_CHECK(t.n_groups == 0 && t.n_members == 0);
  gw_group_table_free(&t);
}

UNIT_TEST(gw_group_lingers_then_unbinds_after_the_grace_time) {
  bind_log l = {{0}};
  gw_group_table t;
  int a;
  UNIT_CHECK(gw_group_table_init(&t, on_first, on_last, &l) == 0);
  gw_group_set_linger(&t, 10000, 100);
  gw_member *m = gw_group_join(&t, "g1", &a);
  gw_group_leave(&t, m, 1000);
  UNIT_CHECK(t.n_groups == 1 && t.n_lingering == 1 && t.n_members == 0);
  UNIT_CHECK_STR(l.log, "+g1"); /* still bound */
  m = gw_group_join(&t, "g1", &a); /* a re-join costs no bind */
  UNIT_CHECK_STR(l.log, "+g1");
  UNIT_CHECK(t.n_lingering == 0 && t.lingering_rejoins == 1);
  gw_group_leave(&t, m, 2000);
  gw_group_expire(&t, 11999);
  UNIT_CHECK(t.n_lingering == 1 && t.n_groups == 1);
  gw_group_expire(&t, 12000); /* 10 s after the last member left */
  UNIT_CHECK_STR(l.log, "+g1-g1");
  UNIT_CHECK(t.n_lingering == 0 && t.n_groups == 0 && !t.linger_head && !t.linger_tail);
  gw_group_table_free(&t);
}

UNIT_TEST(gw_group_lingering_is_bounded_oldest_unbound_first) {
  bind_log l = {{0}};
  gw_group_table t;
  int a;
  char name[16];
  UNIT_CHECK(gw_group_table_init(&t, on_first, on_last, &l) == 0);
  gw_group_set_linger(&t, 10000, 2);
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "g%d", i);
    gw_group_leave(&t, gw_group_join(&t, name, &a), (uint64_t)i);
  }
  UNIT_CHECK(strcmp(l.log, "+g0+g1+g2-g0+g3-g1") == 0);
  UNIT_CHECK(t.n_lingering == 2 && t.n_groups == 2);
  UNIT_CHECK(strcmp(t.linger_head->name, "g2") == 0 && strcmp(t.linger_tail->name, "g3") == 0);
  /* A re-join from the middle of the list keeps it linked. */
  gw_member *m = gw_group_join(&t, "g2", &a);
  UNIT_CHECK(t.n_lingering == 1 && t.linger_head == t.linger_tail);
  gw_group_leave(&t, m, 5);
  gw_group_expire(&t, 1000000);
  UNIT_CHECK(t.n_groups == 0 && t.n_lingering == 0);
  gw_group_table_free(&t);
}

UNIT_TEST(gw_group_linger_0_unbinds_at_once) {
  bind_log l = {{0}};
  gw_group_table t;
  int a;
  UNIT_CHECK(gw_group_table_init(&t, on_first, on_last, &l) == 0);
  gw_group_set_linger(&t, 0, 1000);
  gw_group_leave(&t, gw_group_join(&t, "g", &a), 7);
  UNIT_CHECK_STR(l.log, "+g-g");
  UNIT_CHECK(t.n_groups == 0 && t.n_lingering == 0);
  gw_group_table_free(&t);
}

UNIT_TEST(gw_group_many_groups_grow) {
  gw_group_table t;
  UNIT_CHECK(gw_group_table_init(&t, NULL, NULL, NULL) == 0);
  char name[32];
  int x;
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "job_events-%d", i);
    UNIT_CHECK(gw_group_join(&t, name, &x) != NULL);
  }
  UNIT_CHECK(t.n_groups == 3000 && t.cap >= 3000);
  UNIT_CHECK(gw_group_find(&t, "job_events-2999", 15) != NULL);
  UNIT_CHECK(gw_group_find(&t, "job_events-299", 14) != NULL);
  UNIT_CHECK(gw_group_find(&t, "job_events-29", 13) != NULL);
  UNIT_CHECK(gw_group_find(&t, "job_events-3000", 15) == NULL);
  /* prefix lookups with an explicit length must not match longer names */
  UNIT_CHECK(gw_group_find(&t, "job_events-1234x", 15) != NULL);
  gw_group_table_free(&t);
}

UNIT_TEST(gw_timeq_order_and_moves) {
  gw_timeq a = {0}, b = {0};
  gw_timeq_node n1 = {0}, n2 = {0}, n3 = {0};
  gw_timeq_push(&a, &n1, 10);
  gw_timeq_push(&a, &n2, 20);
  gw_timeq_push(&a, &n3, 30);
  UNIT_CHECK(gw_timeq_expired(&a, 15) == &n1);
  gw_timeq_push(&a, &n1, 40); /* touched: to the tail */
  UNIT_CHECK(gw_timeq_expired(&a, 15) == NULL);
  UNIT_CHECK(gw_timeq_expired(&a, 25) == &n2);
  gw_timeq_push(&b, &n2, 50); /* moved to another queue */
  UNIT_CHECK(a.head == &n3 && a.tail == &n1 && b.head == &n2 && n2.owner == &b);
  gw_timeq_remove(&n3);
  gw_timeq_remove(&n3); /* twice is harmless */
  UNIT_CHECK(a.head == &n1 && a.tail == &n1);
  gw_timeq_remove(&n1);
  gw_timeq_remove(&n2);
  UNIT_CHECK(!a.head && !a.tail && !b.head && !b.tail);
}

UNIT_TEST(gw_clients_limit_per_address) {
  gw_clients t;
  gw_clients_refusal why;
  const gw_clients_limits two = {.total = 2};
  UNIT_CHECK(gw_clients_init(&t) == 0);
  gw_client *a1 = gw_clients_acquire(&t, "10.0.0.1", &two, &why);
  gw_client *a2 = gw_clients_acquire(&t, "10.0.0.1", &two, &why);
  UNIT_CHECK(a1 && a1 == a2 && a1->handshaking == 2 && why == GW_CLIENTS_OK);
  UNIT_CHECK(gw_clients_acquire(&t, "10.0.0.1", &two, &why) == NULL); /* at the bound */
  UNIT_CHECK(why == GW_CLIENTS_TOTAL);
  gw_client *b = gw_clients_acquire(&t, "10.0.0.2", &two, &why);
  UNIT_CHECK(b && b != a1 && t.n == 2);
  gw_clients_opened(a1); /* open ones count against the total too */
  UNIT_CHECK(a1->open == 1 && a1->handshaking == 1);
  UNIT_CHECK(gw_clients_acquire(&t, "10.0.0.1", &two, &why) == NULL);
  gw_clients_release(&t, a1, 1);
  UNIT_CHECK(gw_clients_acquire(&t, "10.0.0.1", &two, &why) == a2); /* room again */
  gw_clients_release(&t, a1, 0);
  gw_clients_release(&t, a2, 0);
  UNIT_CHECK(t.n == 1); /* the entry goes with its last connection */
  gw_clients_release(&t, b, 0);
  UNIT_CHECK(t.n == 0);
  gw_clients_release(&t, NULL, 0); /* nothing counted: harmless */
  char addr[32];
  const gw_clients_limits one = {.total = 1};
  for (int i = 0; i < 3000; i++) {
    snprintf(addr, sizeof(addr), "10.1.%d.%d", i / 256, i % 256);
    UNIT_CHECK(gw_clients_acquire(&t, addr, &one, &why) != NULL);
  }
  UNIT_CHECK(t.n == 3000 && t.cap >= 3000);
  gw_clients_free(&t);
}

UNIT_TEST(gw_clients_handshakes_have_their_own_bound_open_ones_do_not_use_it) {
  gw_clients t;
  gw_clients_refusal why;
  const gw_clients_limits lim = {.total = 5, .handshakes = 2};
  UNIT_CHECK(gw_clients_init(&t) == 0);
  gw_client *e = gw_clients_acquire(&t, "::1", &lim, &why);
  UNIT_CHECK(e && gw_clients_acquire(&t, "::1", &lim, &why) == e);
  UNIT_CHECK(!gw_clients_acquire(&t, "::1", &lim, &why) && why == GW_CLIENTS_HANDSHAKES);
  UNIT_CHECK(strcmp(gw_clients_refusal_name(why), "max_handshakes_per_client") == 0);
  gw_clients_opened(e);
  gw_clients_opened(e); /* both accepted: room for two more handshakes */
  UNIT_CHECK(gw_clients_acquire(&t, "::1", &lim, &why) == e);
  UNIT_CHECK(gw_clients_acquire(&t, "::1", &lim, &why) == e);
  UNIT_CHECK(!gw_clients_acquire(&t, "::1", &lim, &why) && why == GW_CLIENTS_HANDSHAKES);
  gw_clients_opened(e); /* 3 open + 1 handshaking: one below the total */
  UNIT_CHECK(gw_clients_acquire(&t, "::1", &lim, &why) == e);
  UNIT_CHECK(!gw_clients_acquire(&t, "::1", &lim, &why) && why == GW_CLIENTS_TOTAL);
  UNIT_CHECK(e->open == 3 && e->handshaking == 2);
  gw_clients_free(&t);
}

UNIT_TEST(gw_send_small_copies_share_a_buffer_shared_frames_are_never_written) {
  gw_send q = {0};
  static const uint8_t pong[2] = {0x8a, 0x00};
  for (int i = 0; i < 1000; i++) UNIT_CHECK(gw_send_push_copy(&q, pong, 2) == 0);
  /* 2,000 bytes in 512-byte buffers: 4 nodes, not 1,000. */
  uv_buf_t iov[GW_SEND_IOV_MAX];
  size_t bytes, n = gw_send_gather(&q, iov, &bytes);
  UNIT_CHECK(n == 4 && bytes == 2000 && q.bytes == 2000);
  gw_buf *shared = gw_buf_frame(1, "event", 5);
  UNIT_CHECK(gw_send_push(&q, shared) == 0);
  UNIT_CHECK(gw_send_push_copy(&q, pong, 2) == 0); /* not into the shared frame */
  UNIT_CHECK(shared->len == 7 && shared->refs == 2);
  n = gw_send_gather(&q, iov, &bytes);
  UNIT_CHECK(n == 6 && bytes == 2009);
  /* A write in flight covers the first buffer; copies after it still go in
   * order, and what the write took is consumed exactly. */
  gw_send_begin_write(&q, 1, 512);
  UNIT_CHECK(gw_send_push_copy(&q, pong, 2) == 0);
  gw_send_end_write(&q);
  UNIT_CHECK(q.bytes == 2009 + 2 - 512);
  gw_send_drop_unsent(&q);
  UNIT_CHECK(q.bytes == 0 && q.head == NULL && q.tail_room == 0);
  gw_send_free(&q);
  gw_buf_unref(shared);
}
