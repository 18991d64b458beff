/*
 * gw_dispatch.c - bridge events on the loop thread (see gw_dispatch.h).
 *
 * The fanout is the hot path: one group message, framed once by the AMQP
 * thread, is queued by reference on every member's connection; the actual
 * writes happen once per connection in the loop's check phase. No JSON is
 * parsed and no payload copied here.
 */
#include "gw_dispatch.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_names.h"
#include "chan_reply.h"
#include "chan_reply_channel.h"
#include "gw_conn.h"
#include "log.h"

/* With the history every event comes from the stream: only control keys
 * (wsgw!...: kicks) are bound to our own queue. The bridge picks the
 * exchange: control keys on the control exchange, groups on the groups
 * exchange. A user's key is a group of the table (the kick's local index)
 * but bound by no one: every gateway binds wsgw!user.* once (a binding per
 * user cost the broker ~400 us of CPU per connection in a reconnect storm
 * of distinct users; kicks are rare, and go to every gateway). */
static int gw_dispatch__bound(const gw_server *s, const char *group) {
  if (strncmp(group, CHAN_USER_KEY_PREFIX, sizeof CHAN_USER_KEY_PREFIX - 1) == 0) return 0;
  return !s->cfg->history.enabled ||
         strncmp(group, CHAN_CONTROL_PREFIX, sizeof CHAN_CONTROL_PREFIX - 1) == 0;
}

void gw_dispatch_bind(const char *group, void *arg) {
  gw_server *s = arg;
  if (s->bridge && gw_dispatch__bound(s, group)) gw_bridge_bind(s->bridge, group);
}

void gw_dispatch_unbind(const char *group, void *arg) {
  gw_server *s = arg;
  if (s->bridge && gw_dispatch__bound(s, group)) gw_bridge_unbind(s->bridge, group);
}

/* After a fanout (compression on): the group's last event is the one just
 * sent, what its next one is compressed after. The walk may have freed the
 * group (its last member failed): it is looked up again. */
static void gw_dispatch__zprev(gw_server *s, const char *name, size_t len, gw_buf *frame,
                               gw_buf *env) {
  if (!s->cfg->compression.enabled) return;
  gw_group *g = gw_group_find(&s->groups, name, len);
  if (!g) return;
  gw_group_set_zprev(g, 0, frame);
  gw_group_set_zprev(g, 1, env);
}

static void gw_dispatch__group(gw_server *s, gw_bridge_event *e) {
  gw_group *g = gw_group_find(&s->groups, e->data, e->len);
  /* The last member left while the message was in flight, or the group
   * lingers (still bound, nobody to tell). */
  if (!g || !g->head) return;
  s->stats.group_msgs++;
  /* A slow member only moves to CLOSING and keeps its memberships; if a
   * send fails outright the connection is destroyed and leaves its groups,
   * which frees its node here (and the group, if it was the last member):
   * so take `next` first and touch nothing of g after the walk (prev holds
   * its own reference). */
  gw_buf *prev = g->zprev[0] ? gw_buf_ref(g->zprev[0]) : NULL;
  for (gw_member *m = g->head, *next; m; m = next) {
    next = m->next;
    gw_conn_send_frame(m->conn, e->frame, prev);
    s->stats.deliveries++;
  }
  gw_buf_unref(prev);
  gw_dispatch__zprev(s, e->data, e->len, e->frame, NULL);
}

/* A message of the history (history on): into the ring, then, once live,
 * to the group's members: the emitted text on the old protocol, the
 * wsgw.2 envelope (built once) on wsgw.2. The ring takes the event's
 * reference to the frame. */
static void gw_dispatch__hist(gw_server *s, gw_bridge_event *e) {
  gw_hist_ev *h = gw_hist_append(&s->hist, e->offset, e->digest, e->data, e->len, e->frame);
  e->frame = NULL;
  if (!h) {
    log_warn("history_append_failed", "offset=%llu reason=\"out of memory\"",
             (unsigned long long)e->offset);
    return;
  }
  if (!h->frame || !gw_hist_is_live(&s->hist, h->offset)) return;
  gw_group *g = gw_group_find(&s->groups, h->group, h->glen);
  if (!g || !g->head) return;
  s->stats.group_msgs++;
  gw_buf *prev[2] = {g->zprev[0] ? gw_buf_ref(g->zprev[0]) : NULL,
                     g->zprev[1] ? gw_buf_ref(g->zprev[1]) : NULL};
  for (gw_member *m = g->head, *next; m; m = next) { /* see gw_dispatch__group */
    next = m->next;
    gw_conn_send_event(m->conn, &s->hist, h, prev);
    s->stats.deliveries++;
  }
  gw_buf_unref(prev[0]);
  gw_buf_unref(prev[1]);
  /* the envelope exists when a wsgw.2 member needed it: else no wsgw.2
   * member's window ends with this event */
  gw_dispatch__zprev(s, h->group, h->glen, h->frame, h->env);
}

/* The history's state changes (gw_bridge.h): a new or recreated history,
 * a gap past the retention, and where live delivery starts. */
static void gw_dispatch__hist_state(gw_server *s, gw_bridge_event *e) {
  switch (e->kind) {
    case GW_BRIDGE_HIST_RESET:
      gw_hist_reset(&s->hist);
      gw_conn_history_lost(s, GW_HIST_UNKNOWN);
      break;
    case GW_BRIDGE_HIST_GAP: { /* what was before is no longer followed on */
      uint64_t live = s->hist.live_from;
      gw_hist_reset(&s->hist);
      s->hist.live_from = live;
      gw_conn_history_lost(s, GW_HIST_EXPIRED);
      break;
    }
    case GW_BRIDGE_HIST_LIVE: s->hist.live_from = e->offset; break;
    default: assert(0);
  }
}

/* A kick: one connection by id, or every member of a user's control key.
 * Closing keeps memberships until the close completes (or destroys the
 * connection, which frees only its own node): take `next` first, as the
 * fanout does. */
/* A kick that asked (reply_to) hears how many connections this gateway
 * closed, when any: the kicker learns "somebody held it" from the first
 * answer, "nobody" from none (every gateway gets every user's kick). */
static void gw_dispatch__kick_answer(gw_server *s, const gw_bridge_event *e, unsigned n) {
  if (!n || !e->reply_len || !s->bridge) return;
  char key[sizeof CHAN_GATEWAY_KEY_PREFIX + CHAN_QUEUE_NAME_MAX];
  if (e->conn_id) snprintf(key, sizeof key, CHAN_GATEWAY_KEY_PREFIX "%s", s->queue);
  else snprintf(key, sizeof key, "%s", e->data);
  char *body = malloc(sizeof CHAN_KICK_ANSWER + 16 + strlen(key));
  if (!body) return;
  int len = sprintf(body, CHAN_KICK_ANSWER, n, key); /* key: wsgw!, no JSON escapes */
  gw_bridge_publish(s->bridge, e->data + e->len + 1, 0, body, (size_t)len);
}

static void gw_dispatch__kick(gw_server *s, gw_bridge_event *e) {
  s->stats.kicks_received++;
  unsigned n = 0;
  if (e->conn_id) {
    gw_conn *c = gw_conntab_get(&s->conns, e->conn_id);
    log_info("kick", "id=%llu found=%d", (unsigned long long)e->conn_id, c != NULL);
    if (c) n = (unsigned)gw_conn_kick(c);
  } else {
    gw_group *g = gw_group_find(&s->groups, e->data, e->len);
    unsigned members = g ? g->n_members : 0;
    /* Every gateway hears every user's kick: one that holds nobody says
     * nothing above debug. */
    if (members) log_info("kick", "key=%s members=%u", e->data, members);
    else log_debug("kick", "key=%s members=0", e->data);
    for (gw_member *m = g ? g->head : NULL, *next; m; m = next) {
      next = m->next;
      n += (unsigned)gw_conn_kick(m->conn); /* those closing already: not again */
    }
  }
  gw_dispatch__kick_answer(s, e, n);
}

static void gw_dispatch__reply(gw_server *s, gw_bridge_event *e) {
  chan_reply r;
  char err[128];
  if (chan_reply_decode(e->data, e->len, &r, err, sizeof(err)) != 0) {
    log_warn("reply_invalid", "reason=\"%s\"", err);
    return;
  }
  char queue[CHAN_QUEUE_NAME_MAX + 1];
  uint64_t id = 0;
  if (chan_reply_channel_parse(r.reply_channel, queue, sizeof(queue), &id) != 0) {
    log_warn("reply_invalid", "reason=\"bad reply_channel\"");
  } else {
    gw_conn *c = gw_conntab_get(&s->conns, id);
    /* A vanished connection is normal (the client left): drop quietly. */
    if (c) gw_conn_apply_reply(c, &r);
    else s->stats.replies_dropped++;
  }
  chan_reply_free(&r);
}

static void gw_dispatch__rebind(const char *group, void *arg) {
  gw_server *s = arg;
  if (gw_dispatch__bound(s, group)) gw_bridge_bind(s->bridge, group);
}

static void gw_dispatch__up(gw_server *s, gw_bridge_event *e) {
  size_t n = e->len < CHAN_QUEUE_NAME_MAX ? e->len : CHAN_QUEUE_NAME_MAX;
  memcpy(s->queue, e->data, n);
  s->queue[n] = '\0';
  s->stats.amqp_connects++;
  /* A new queue has no bindings: bind every group we still have members
   * of, so events flow again without any client resubscribing. */
  gw_group_foreach(&s->groups, gw_dispatch__rebind, s);
  /* Our own control key: kicks of one connection (chanctl kick --conn);
   * and every user's (wsgw!user.*: gw_dispatch__bound says why). */
  char key[sizeof CHAN_GATEWAY_KEY_PREFIX + CHAN_QUEUE_NAME_MAX];
  snprintf(key, sizeof key, CHAN_GATEWAY_KEY_PREFIX "%s", s->queue);
  if (s->bridge) {
    gw_bridge_bind(s->bridge, key);
    gw_bridge_bind(s->bridge, CHAN_USER_KEY_PREFIX "*");
  }
  log_info("broker_up", "queue=%s groups=%zu", s->queue, s->groups.n_groups);
}

static void gw_dispatch__down(gw_server *s) {
  s->queue[0] = '\0';
  s->hist.live_from = UINT64_MAX; /* live again at the next LIVE */
  /* Their replies were addressed to the lost queue: they will not come. */
  gw_conn_fail_connecting(s);
}

void gw_dispatch_events(gw_bridge_event *events, void *arg) {
  gw_server *s = arg;
  while (events) {
    gw_bridge_event *e = events;
    events = e->next;
    switch (e->kind) {
      case GW_BRIDGE_GROUP: gw_dispatch__group(s, e); break;
      case GW_BRIDGE_REPLY: gw_dispatch__reply(s, e); break;
      case GW_BRIDGE_UP: gw_dispatch__up(s, e); break;
      case GW_BRIDGE_DOWN: gw_dispatch__down(s); break;
      case GW_BRIDGE_KICK: gw_dispatch__kick(s, e); break;
      case GW_BRIDGE_HIST: gw_dispatch__hist(s, e); break;
      case GW_BRIDGE_HIST_RESET:
      case GW_BRIDGE_HIST_GAP:
      case GW_BRIDGE_HIST_LIVE: gw_dispatch__hist_state(s, e); break;
      case GW_BRIDGE_REFUSED: {
        gw_conn *c = gw_conntab_get(&s->conns, e->conn_id);
        if (c) gw_conn_refused(c);
        break;
      }
    }
    gw_bridge_event_free(e);
  }
}
