/*
 * xgb_capi_probe.c: what libxgboost's C API would mean inside a PostgreSQL
 * backend, measured in a standalone process (never loaded into the server).
 * Evidence for issue #10, item 3 (docs/model.md, "Gradient-boosted trees:
 * library or our own").
 *
 * Reads the dense matrix test/bench/gbm_reference.py --matrix-out writes
 * (header; columns won, train, weight, then the features; "nan" = missing),
 * trains on the rows with train = 1 as the Python route does (hist, depth,
 * eta, rounds), once per nthread, and reports per round times (the longest
 * single XGBoosterUpdateOneIter is the cancel latency a backend would have),
 * peak and current RSS, the threads the library starts and their signal
 * masks, the holdout AUC (cross-check with the Python numbers), how errors
 * and log messages come back, and what a saved model looks like.
 *
 * Build (make bench-deps first): make test/bench/xgb_capi_probe, or
 *   gcc -O2 -Wall -Wextra -Werror -o test/bench/xgb_capi_probe \
 *       test/bench/xgb_capi_probe.c -lxgboost -lm
 * Run:
 *   test/bench/xgb_capi_probe m.csv [rounds=300] [depth=6] [eta=0.1]
 *       [threads=1,2] [cancel_after_s=0] [save_prefix]
 * cancel_after_s > 0: a SIGALRM after that many seconds sets a flag that
 * the round loop checks between rounds (what CHECK_FOR_INTERRUPTS would
 * do), and the probe reports how long after the signal the loop stopped.
 * Signals are blocked in the library's threads (blocked around every call
 * into it; the threads inherit the mask when they are created), as a
 * backend wrapper would have to.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <xgboost/c_api.h>

/* Every call into the library: on failure print XGBGetLastError and stop. */
#define SAFE(call) do { \
	if ((call) != 0) { \
		fprintf(stderr, "xgb_capi_probe: %s failed: %s\n", #call, XGBGetLastError()); \
		exit(1); \
	} \
} while (0)

static volatile sig_atomic_t cancel_requested = 0;
static sigset_t all_signals;
static sigset_t saved_mask;

/* Monotonic seconds. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* SIGALRM: the stand-in for a query cancel; only sets a flag, as
 * PostgreSQL's handlers do.  (It runs when the round in progress returns:
 * signals are blocked while the library runs.) */
static void
on_alarm(int sig)
{
	(void) sig;
	cancel_requested = 1;
}

/* Block every signal in this thread while the library runs, so that the
 * threads it creates inherit a full mask and no handler runs on them. */
static void
enter_library(void)
{
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_mask);
}

/* Restore the signal mask after a call into the library; a signal that came
 * meanwhile is delivered now, on this thread. */
static void
leave_library(void)
{
	pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
}

/* Resident set now (kB), from /proc/self/statm. */
static long
rss_now_kb(void)
{
	long pages = 0, resident = 0;
	FILE	   *f = fopen("/proc/self/statm", "r");

	if (f)
	{
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Peak resident set so far (kB). */
static long
rss_peak_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* CPU seconds (user + system) of the whole process so far. */
static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Threads of this process, and how many of them block every standard
 * signal (SigBlk of /proc/self/task/N/status: signals 1-31 but SIGKILL and
 * SIGSTOP, which cannot be blocked). */
static void
count_threads(int *threads, int *blocked)
{
	const unsigned long long standard = 0x7fffffffULL & ~(1ULL << (SIGKILL - 1)) & ~(1ULL << (SIGSTOP - 1));
	DIR		   *d = opendir("/proc/self/task");
	struct dirent *e;

	*threads = *blocked = 0;
	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
	{
		char		path[300], line[256];
		FILE	   *f;

		if (e->d_name[0] == '.')
			continue;
		(*threads)++;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f))
		{
			unsigned long long mask;

			if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			{
				if ((mask & standard) == standard)
					(*blocked)++;
				break;
			}
		}
		fclose(f);
	}
	closedir(d);
}

/* The library's log messages: on which thread, and what. */
static void
log_callback(const char *msg)
{
	fprintf(stdout, "log_callback\t%s\n", msg);
	fflush(stdout);
}

/* AUC of scores p against labels y (ties counted half), by ranks. */
static int
cmp_pair(const void *a, const void *b)
{
	const double *x = a, *y = b;

	return (x[0] > y[0]) - (x[0] < y[0]);
}

static double
auc(const float *p, const float *y, size_t n)
{
	double	   *v = malloc(n * 2 * sizeof(double));
	double		npos = 0, rank_sum = 0;
	size_t		i = 0;

	for (size_t k = 0; k < n; k++)
	{
		v[2 * k] = p[k];
		v[2 * k + 1] = y[k];
		npos += y[k];
	}
	qsort(v, n, 2 * sizeof(double), cmp_pair);
	while (i < n)
	{
		size_t		j = i;
		double		pos = 0;

		while (j < n && v[2 * j] == v[2 * i])
			pos += v[2 * j++ + 1];
		rank_sum += pos * ((i + 1 + j) / 2.0);	/* mean rank of the tie group */
		i = j;
	}
	free(v);
	return (rank_sum - npos * (npos + 1) / 2) / (npos * (n - npos));
}

int
main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : NULL;
	int			rounds = argc > 2 ? atoi(argv[2]) : 300;
	const char *depth = argc > 3 ? argv[3] : "6";
	const char *eta = argc > 4 ? argv[4] : "0.1";
	char	   *threads = strdup(argc > 5 ? argv[5] : "1,2");
	double		cancel_after = argc > 6 ? atof(argv[6]) : 0;
	const char *save_prefix = argc > 7 ? argv[7] : NULL;
	FILE	   *f;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	int			ncol = 0;
	size_t		nrow = 0, rows_cap = 1 << 16, ntrain = 0, ntest = 0;
	float	   *all;
	float	   *xtrain, *xtest, *ytrain, *ytest, *wtrain;
	int			th, bl;
	double		t0;
	int			major, minor, patch;

	if (!path)
	{
		fprintf(stderr, "usage: xgb_capi_probe matrix.csv [rounds] [depth] [eta] [threads] [cancel_after_s] [save_prefix]\n");
		return 2;
	}
	sigfillset(&all_signals);
	XGBoostVersion(&major, &minor, &patch);
	printf("libxgboost\t%d.%d.%d\n", major, minor, patch);
	count_threads(&th, &bl);
	printf("threads_at_start\t%d\n", th);

	/* the matrix: all rows as floats, then split */
	t0 = now();
	if ((f = fopen(path, "r")) == NULL)
	{
		fprintf(stderr, "xgb_capi_probe: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	if ((len = getline(&line, &cap, f)) <= 0)
		return 1;
	for (ssize_t i = 0; i < len; i++)
		ncol += line[i] == ',';
	ncol += 1;
	all = malloc(rows_cap * ncol * sizeof(float));
	while ((len = getline(&line, &cap, f)) > 0)
	{
		char	   *s = line;

		if (nrow == rows_cap)
		{
			rows_cap *= 2;
			all = realloc(all, rows_cap * ncol * sizeof(float));
		}
		for (int c = 0; c < ncol; c++)
		{
			char	   *end;

			all[nrow * ncol + c] = strtof(s, &end);
			if (end == s)
				all[nrow * ncol + c] = NAN;
			s = (*end == ',') ? end + 1 : end;
		}
		nrow++;
	}
	fclose(f);
	int			nfeat = ncol - 3;

	for (size_t r = 0; r < nrow; r++)
		(all[r * ncol + 1] != 0 ? ntrain++ : ntest++);
	xtrain = malloc(ntrain * nfeat * sizeof(float));
	xtest = malloc(ntest * nfeat * sizeof(float));
	ytrain = malloc(ntrain * sizeof(float));
	wtrain = malloc(ntrain * sizeof(float));
	ytest = malloc(ntest * sizeof(float));
	{
		size_t		a = 0, b = 0;

		for (size_t r = 0; r < nrow; r++)
		{
			float	   *row = all + r * ncol;

			if (row[1] != 0)
			{
				memcpy(xtrain + a * nfeat, row + 3, nfeat * sizeof(float));
				ytrain[a] = row[0];
				wtrain[a++] = row[2];
			}
			else
			{
				memcpy(xtest + b * nfeat, row + 3, nfeat * sizeof(float));
				ytest[b++] = row[0];
			}
		}
	}
	free(all);
	printf("matrix\t%zu rows (train %zu, holdout %zu) x %d features, read in %.2f s\n",
		   nrow, ntrain, ntest, nfeat, now() - t0);
	printf("raw_float_matrix_mb\t%.1f (train rows, 4 bytes per value)\n", ntrain * nfeat * 4 / 1e6);
	printf("rss_after_read_mb\t%.1f\n", rss_now_kb() / 1024.0);

	for (char *tok = strtok(threads, ","); tok; tok = strtok(NULL, ","))
	{
		DMatrixHandle dtrain, dtest;
		BoosterHandle bst;
		double		t_dm, t_train0, t_alarm = 0, longest = 0, first = 0, sum = 0, cpu0, cpu1;
		int			longest_at = 0, done = 0, max_threads = 0, max_blocked = 0;
		long		rss_before = rss_now_kb();
		bst_ulong	out_len;
		const float *pred;

		cancel_requested = 0;
		printf("--- nthread %s\n", tok);
		t0 = now();
		enter_library();
		SAFE(XGDMatrixCreateFromMat(xtrain, ntrain, nfeat, NAN, &dtrain));
		SAFE(XGDMatrixSetFloatInfo(dtrain, "label", ytrain, ntrain));
		SAFE(XGDMatrixSetFloatInfo(dtrain, "weight", wtrain, ntrain));
		leave_library();
		t_dm = now() - t0;
		printf("dmatrix_s\t%.2f (DMatrix of the train rows: rss +%.1f MB)\n", t_dm,
			   (rss_now_kb() - rss_before) / 1024.0);
		enter_library();
		SAFE(XGBoosterCreate(&dtrain, 1, &bst));
		SAFE(XGBoosterSetParam(bst, "objective", "binary:logistic"));
		SAFE(XGBoosterSetParam(bst, "tree_method", "hist"));
		SAFE(XGBoosterSetParam(bst, "max_depth", depth));
		SAFE(XGBoosterSetParam(bst, "eta", eta));
		SAFE(XGBoosterSetParam(bst, "nthread", tok));
		leave_library();

		if (cancel_after > 0)
		{
			struct sigaction sa;
			struct itimerval it = {{0, 0}, {(long) cancel_after, (long) ((cancel_after - (long) cancel_after) * 1e6)}};

			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_alarm;
			sigaction(SIGALRM, &sa, NULL);
			t_alarm = now() + cancel_after;	/* when the timer expires */
			setitimer(ITIMER_REAL, &it, NULL);
		}
		cpu0 = cpu_seconds();
		t_train0 = now();
		for (int i = 0; i < rounds; i++)
		{
			double		r0 = now(), dt;

			if (cancel_requested)
				break;			/* CHECK_FOR_INTERRUPTS between rounds */
			enter_library();
			SAFE(XGBoosterUpdateOneIter(bst, i, dtrain));
			leave_library();
			dt = now() - r0;
			if (i == 0)
				first = dt;
			sum += dt;
			if (dt > longest)
			{
				longest = dt;
				longest_at = i;
			}
			done++;
			if (i == 0 || i == rounds - 1)
			{
				count_threads(&th, &bl);
				if (th > max_threads)
				{
					max_threads = th;
					max_blocked = bl;
				}
			}
		}
		cpu1 = cpu_seconds();
		if (cancel_requested)
		{
			double		stopped = now();

			printf("cancel\tsignal sent %.2f s into training, loop stopped %.3f s after it, after %d rounds\n",
				   t_alarm - t_train0, stopped - t_alarm, done);
		}
		printf("train_s\t%.2f for %d rounds (cpu %.2f s)\n", now() - t_train0, done, cpu1 - cpu0);
		printf("round_s\tmean %.4f, first %.4f, longest %.4f (round %d), rest mean %.4f\n",
			   sum / (done ? done : 1), first, longest, longest_at,
			   done > 1 ? (sum - first) / (done - 1) : 0.0);
		printf("threads_in_training\t%d (of which %d block all signals)\n", max_threads, max_blocked);
		printf("rss_after_training_mb\t%.1f (peak so far %.1f)\n", rss_now_kb() / 1024.0, rss_peak_kb() / 1024.0);

		enter_library();
		SAFE(XGDMatrixCreateFromMat(xtest, ntest, nfeat, NAN, &dtest));
		SAFE(XGBoosterPredict(bst, dtest, 0, 0, 0, &out_len, &pred));
		leave_library();
		printf("holdout_auc\t%.4f (%llu predictions)\n", auc(pred, ytest, ntest), (unsigned long long) out_len);

		if (save_prefix)
		{
			char		fn[1024];
			bst_ulong	clen;
			const char *config;

			snprintf(fn, sizeof(fn), "%s-nthread%s.json", save_prefix, tok);
			SAFE(XGBoosterSaveModel(bst, fn));
			SAFE(XGBoosterSaveJsonConfig(bst, &clen, &config));
			printf("saved\t%s; JSON config %llu bytes: %.160s...\n", fn, (unsigned long long) clen, config);
		}
		SAFE(XGDMatrixFree(dtest));
		SAFE(XGBoosterFree(bst));
		SAFE(XGDMatrixFree(dtrain));
		count_threads(&th, &bl);
		printf("after_free\trss %.1f MB (was %.1f before the DMatrix), threads %d\n",
			   rss_now_kb() / 1024.0, rss_before / 1024.0, th);
	}
	/* errors: what a failing call returns and says (after the training
	 * runs, so that their thread counts are the training's own) */
	{
		DMatrixHandle bad;
		BoosterHandle b;
		DMatrixHandle tiny;
		float		one[2] = {1, 2}, lab[1] = {1};
		int			rc;

		enter_library();
		rc = XGDMatrixCreateFromFile("/nonexistent/file.libsvm", 1, &bad);
		/* the message ends in a stack trace: its first line only */
		printf("error_missing_file\trc %d: %.*s\n", rc, rc ? (int) strcspn(XGBGetLastError(), "\n") : 10,
			   rc ? XGBGetLastError() : "(no error)");
		SAFE(XGDMatrixCreateFromMat(one, 1, 2, NAN, &tiny));
		SAFE(XGDMatrixSetFloatInfo(tiny, "label", lab, 1));
		SAFE(XGBoosterCreate(&tiny, 1, &b));
		rc = XGBoosterSetParam(b, "tree_method", "no_such_method");
		printf("error_bad_param_set\trc %d%s%s\n", rc, rc ? ": " : " (accepted: checked later)", rc ? XGBGetLastError() : "");
		rc = XGBoosterUpdateOneIter(b, 0, tiny);
		printf("error_bad_param_at_update\trc %d: %s\n", rc, rc ? XGBGetLastError() : "(no error)");
		SAFE(XGBoosterFree(b));
		SAFE(XGBoosterCreate(&tiny, 1, &b));
		SAFE(XGBoosterSetParam(b, "max_depth", "-3"));
		rc = XGBoosterUpdateOneIter(b, 0, tiny);
		printf("error_bad_depth_at_update\trc %d: %s\n", rc, rc ? XGBGetLastError() : "(no error)");
		SAFE(XGBoosterFree(b));
		SAFE(XGBRegisterLogCallback(log_callback));
		SAFE(XGBoosterCreate(&tiny, 1, &b));
		SAFE(XGBoosterSetParam(b, "no_such_parameter", "1"));
		rc = XGBoosterUpdateOneIter(b, 0, tiny);
		printf("unknown_param_at_update\trc %d (validate_parameters off, the C API's default)\n", rc);
		SAFE(XGBoosterFree(b));
		SAFE(XGBoosterCreate(&tiny, 1, &b));
		SAFE(XGBoosterSetParam(b, "validate_parameters", "1"));
		SAFE(XGBoosterSetParam(b, "no_such_parameter", "1"));
		rc = XGBoosterUpdateOneIter(b, 0, tiny);
		printf("unknown_param_validated\trc %d (any warning is on a log_callback line above)\n", rc);
		SAFE(XGBoosterFree(b));
		SAFE(XGDMatrixFree(tiny));
		leave_library();
	}

	printf("peak_rss_mb\t%.1f\n", rss_peak_kb() / 1024.0);
	free(xtrain);
	free(xtest);
	free(ytrain);
	free(wtrain);
	free(ytest);
	free(threads);
	free(line);
	return 0;
}
