/* A thread for slow jobs beside the loop (see worker.h): a queue under a
 * mutex, a condition variable to wake the thread, an eventfd to wake the
 * loop with what is done. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/worker.h"

struct worker {
	struct loop *loop;
	struct loop_source *src;
	int efd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool quit;			  /* under lock */
	struct worker_job *queue, **tail; /* to run, in order */
	struct worker_job *running;
	struct worker_job *done, **done_tail; /* run, to deliver, in order */
};

/* Takes the first of list (NULL when empty). */
static struct worker_job *pop(struct worker_job **list, struct worker_job ***tail)
{
	struct worker_job *j = *list;
	if (j) {
		*list = j->next;
		if (!*list)
			*tail = list;
		j->next = NULL;
	}
	return j;
}

static void push(struct worker_job ***tail, struct worker_job *j)
{
	j->next = NULL;
	**tail = j;
	*tail = &j->next;
}

static void *worker_main(void *data)
{
	struct worker *w = data;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->quit && !w->queue)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->quit)
			break;
		struct worker_job *j = pop(&w->queue, &w->tail);
		w->running = j;
		pthread_mutex_unlock(&w->lock);
		j->run(j);
		pthread_mutex_lock(&w->lock);
		w->running = NULL;
		push(&w->done_tail, j);
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* The counter cannot overflow at one a job. */
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Delivers what is done, on the loop's thread. */
static void on_done(void *data, uint32_t events)
{
	struct worker *w = data;
	uint64_t n;
	if (read(w->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("worker: %m");
	pthread_mutex_lock(&w->lock);
	struct worker_job *list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->lock);
	while (list) {
		struct worker_job *j = list;
		list = j->next;
		j->done(j, false);
	}
}

struct worker *worker_new(struct loop *l)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	w->loop = l;
	w->tail = &w->queue;
	w->done_tail = &w->done;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e = 0;
	if (w->efd < 0 || !(w->src = loop_add_fd(l, w->efd, EPOLLIN, on_done, w)))
		e = errno;
	else {
		/* Signals are the loop's (signalfd): the thread blocks them
		 * all, as ZeroMQ's threads do, or one would kill the process. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		if ((e = pthread_create(&w->thread, NULL, worker_main, w)) == 0)
			w->started = true;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (e) {
		worker_free(w);
		errno = e;
		return NULL;
	}
	return w;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->quit = true;
		/* run() may be using it; done() has not been called, so it is
		 * still whole. */
		if (w->running && w->running->cancel)
			w->running->cancel(w->running);
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	struct worker_job *j;
	while ((j = pop(&w->done, &w->done_tail)))
		j->done(j, true);
	while ((j = pop(&w->queue, &w->tail)))
		j->done(j, true);
	loop_remove(w->loop, w->src);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void worker_submit(struct worker *w, struct worker_job *j)
{
	pthread_mutex_lock(&w->lock);
	push(&w->tail, j);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}
