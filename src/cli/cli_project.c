/* cli_project.c -- `gmflow project`: project a GM layer's training trajectory (and, optionally, a
 * fully connected network's neurons) onto the top-2 principal subspace of the final mixture,
 * marginalized over beta (the paper's Figure 4).
 *
 * Input: the snapshot directories that `gmflow train --snapshot-every N` writes
 * (epoch_NNNN_mu.npy with epoch_NNNN_sigma.npy for the diagonal layer or epoch_NNNN_C.npy for the
 * full one; epoch_NNNN_beta.npy for an FC network).
 *
 * The mathematics (mixture covariance, top-2 eigenvectors, projections) and the snapshot listing
 * are in the library (gmflow/project.h, src/discrete/project.c); this file parses, calls, writes.
 * Files (written atomically) in --out:
 *   trajectory.csv   source,epoch,k,mx,my,cxx,cxy,cyy   (source gm or fc; fc rows have c = 0)
 *   pcs.csv          rank,eigenvalue,fraction   (fraction of trace S)
 *   pcs.npy          (2, d) the principal directions
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/io.h"
#include "gmflow/project.h"

#define CMD "gmflow project"

static void help(void) {
    printf("usage: " CMD " --gm DIR [--fc DIR] [--epoch E] [--out DIR]\n\n"
           "Project a GM layer's trajectory onto the top-2 principal subspace of its final\n"
           "mixture marginalized over beta (Figure 4 of the paper), and optionally an FC\n"
           "network's neurons onto the same plane.\n\n"
           "  --gm DIR     snapshot directory of a GM run (gmflow train --model gm|gm-full\n"
           "               --snapshot-every N writes <out>/snapshots)\n"
           "  --fc DIR     snapshot directory of an FC run (its beta_j are projected)\n"
           "  --epoch E    the GM snapshot whose mixture defines the plane (default: the last)\n"
           "  --out DIR    output directory, created if needed (default out/project)\n"
           "  -h, --help   this help\n"
           "  --version    print the version and exit\n\n"
           "Snapshot files are epoch_<digits>_<group>.npy (train writes epoch_0003_mu.npy);\n"
           "two files for one epoch (epoch_3_mu.npy beside epoch_0003_mu.npy) are an error,\n"
           "other epoch_*_<group>.npy names are skipped with a note.\n\n"
           "Files in DIR (atomic): trajectory.csv (source,epoch,k,mx,my,cxx,cxy,cyy: projected\n"
           "means and covariances; FC rows have zero covariance), pcs.csv (rank,eigenvalue,\n"
           "fraction of the total variance), pcs.npy (2 x d principal directions).\n\n"
           "Exit status: 0 success; 1 runtime failure (missing, malformed or inconsistent\n"
           "snapshots, a write error); 2 usage error (bad option or value).\n");
}

typedef struct options {
    const char *gmdir, *fcdir, *out;
    long long epoch;
} options;

/* Returns -1 to go on, else the exit status (0 for --help / --version). */
static int parse_options(int argc, char **argv, options *o) {
    *o = (options){NULL, NULL, "out/project", -1};
    static const struct option longopts[] = {{"gm", required_argument, 0, 'g'},
                                             {"fc", required_argument, 0, 'f'},
                                             {"epoch", required_argument, 0, 'e'},
                                             {"out", required_argument, 0, 'o'},
                                             {"help", no_argument, 0, 'h'},
                                             {"version", no_argument, 0, 'V'},
                                             {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (c) {
        case 'g':
            o->gmdir = optarg;
            break;
        case 'f':
            o->fcdir = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'e':
            if (parse_count("--epoch", optarg, 0, (unsigned long long)LLONG_MAX, &v)) return 2;
            o->epoch = (long long)v;
            break;
        case 'h':
            help();
            return 0;
        case 'V':
            return gmf_cli_version(CMD);
        case ':':
            return usage_error("%s needs a value", opt);
        default:
            return usage_error("unknown option '%s'", opt);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->gmdir) return usage_error("--gm DIR is required");
    return -1;
}

static int path_of(char *out, size_t size, const char *dir, const char *name) {
    const int w = snprintf(out, size, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= size) return fail("path too long: %s/%s", dir, name);
    return 0;
}

/* The snapshot files of `group` in dir (a note on stderr for skipped names; none is an error). */
static int list_snapshots(const char *dir, const char *group, const char *what,
                          gmf_project_epoch **ep, size_t *n) {
    size_t nskip = 0;
    char first[256];
    if (gmf_project_list_epochs(ep, n, &nskip, first, sizeof first, dir, group))
        return fail("%s", gmf_errmsg());
    if (nskip)
        fprintf(stderr,
                CMD ": note: skipped %zu file(s) in %s not named epoch_<digits>_%s.npy "
                    "(first: %s)\n",
                nskip, dir, group, first);
    if (*n == 0) {
        free(*ep);
        *ep = NULL;
        return fail("no %s snapshots (epoch_NNNN_%s.npy) in %s", what, group, dir);
    }
    return 0;
}

/* Read the GM snapshot of list entry e (K, d: 0 = any). */
static int read_snapshot(const char *dir, const gmf_project_epoch *e, int full, size_t K, size_t d,
                         gmf_project_snap *s) {
    char sib[300], mu[4400], sig[4400];
    if (gmf_project_sibling(sib, sizeof sib, e->name, "mu", full ? "C" : "sigma"))
        return fail("%s", gmf_errmsg());
    if (path_of(mu, sizeof mu, dir, e->name) || path_of(sig, sizeof sig, dir, sib)) return 1;
    if (gmf_project_snap_read(s, mu, sig, full, K, d)) return fail("%s", gmf_errmsg());
    return 0;
}

/* The reference snapshot's plane: P (2 x d, allocated), lam, trace, K, d, full. */
typedef struct plane {
    size_t K, d, epoch;
    int full;
    double *P, lam[2], trace;
} plane;

static int make_plane(const options *o, const gmf_project_epoch *ep, size_t nep, plane *pl) {
    const gmf_project_epoch *ref = &ep[nep - 1];
    if (o->epoch >= 0) {
        ref = NULL;
        for (size_t i = 0; i < nep; i++)
            if (ep[i].epoch == (size_t)o->epoch) ref = &ep[i];
        if (!ref)
            return fail("--epoch %lld: no snapshot epoch_%04lld_mu.npy in %s", o->epoch, o->epoch,
                        o->gmdir);
    }
    char sib[300], probe[4400];
    struct stat st;
    if (gmf_project_sibling(sib, sizeof sib, ref->name, "mu", "sigma"))
        return fail("%s", gmf_errmsg());
    if (path_of(probe, sizeof probe, o->gmdir, sib)) return 1;
    pl->full = stat(probe, &st) != 0;
    /* gm-lowrank (Sigma = diag(sigma^2) + V V^T): reading mu and sigma alone would drop V V^T */
    if (gmf_project_sibling(sib, sizeof sib, ref->name, "mu", "lowrank"))
        return fail("%s", gmf_errmsg());
    if (path_of(probe, sizeof probe, o->gmdir, sib)) return 1;
    if (stat(probe, &st) == 0)
        return fail("%s: a gm-lowrank run (%s): its covariances diag(sigma^2) + V V^T are not "
                    "supported here (only sigma or C would be read)",
                    o->gmdir, sib);
    gmf_project_snap s;
    if (read_snapshot(o->gmdir, ref, pl->full, 0, 0, &s)) return 1;
    pl->K = s.K, pl->d = s.d, pl->epoch = ref->epoch;
    pl->P = gmf_calloc(2 * s.d, sizeof(double), "principal directions");
    int rc = pl->P ? gmf_project_plane(pl->P, pl->lam, &pl->trace, &s) : GMF_ENOMEM;
    gmf_project_snap_free(&s);
    if (rc) return fail("%s: epoch %zu: %s", o->gmdir, ref->epoch, gmf_errmsg());
    return 0;
}

/* trajectory.csv: every GM snapshot, then every FC snapshot. */
static int write_trajectory(FILE *fp, const options *o, const plane *pl,
                            const gmf_project_epoch *ep, size_t nep, const gmf_project_epoch *fep,
                            size_t nfep) {
    fputs("source,epoch,k,mx,my,cxx,cxy,cyy\n", fp);
    double *row = gmf_calloc(5 * pl->K, sizeof(double), "projection");
    if (!row) return fail("%s", gmf_errmsg());
    for (size_t i = 0; i < nep; i++) {
        gmf_project_snap s;
        if (read_snapshot(o->gmdir, &ep[i], pl->full, pl->K, pl->d, &s)) {
            free(row);
            return 1;
        }
        int rc = gmf_project_gm(row, &s, pl->P);
        gmf_project_snap_free(&s);
        if (rc) {
            free(row);
            return fail("%s", gmf_errmsg());
        }
        for (size_t k = 0; k < pl->K; k++)
            fprintf(fp, "gm,%zu,%zu,%.10g,%.10g,%.10g,%.10g,%.10g\n", ep[i].epoch, k, row[5 * k],
                    row[5 * k + 1], row[5 * k + 2], row[5 * k + 3], row[5 * k + 4]);
    }
    free(row);
    for (size_t i = 0; i < nfep; i++) {
        char path[4400];
        double *B = NULL, *xy = NULL;
        size_t m = 0;
        if (path_of(path, sizeof path, o->fcdir, fep[i].name)) return 1;
        if (gmf_project_read_matrix(path, pl->d, &B, &m)) return fail("%s", gmf_errmsg());
        if (!(xy = gmf_calloc(2 * m, sizeof(double), "projection"))) {
            free(B);
            return fail("%s", gmf_errmsg());
        }
        gmf_project_points(xy, B, m, pl->d, pl->P);
        for (size_t j = 0; j < m; j++)
            fprintf(fp, "fc,%zu,%zu,%.10g,%.10g,0,0,0\n", fep[i].epoch, j, xy[2 * j],
                    xy[2 * j + 1]);
        free(B), free(xy);
    }
    return 0;
}

/* trajectory.csv, pcs.csv, pcs.npy in o->out, each atomically. */
static int write_outputs(const options *o, const plane *pl, const gmf_project_epoch *ep, size_t nep,
                         const gmf_project_epoch *fep, size_t nfep) {
    char path[4400];
    gmf_io_file f;
    if (path_of(path, sizeof path, o->out, "trajectory.csv")) return 1;
    if (gmf_io_open(&f, path)) return fail("%s", gmf_errmsg());
    if (write_trajectory(f.fp, o, pl, ep, nep, fep, nfep)) {
        gmf_io_abort(&f);
        return 1;
    }
    if (gmf_io_commit(&f)) return fail("%s", gmf_errmsg());
    if (path_of(path, sizeof path, o->out, "pcs.csv")) return 1;
    if (gmf_io_open(&f, path)) return fail("%s", gmf_errmsg());
    fputs("rank,eigenvalue,fraction\n", f.fp);
    for (int r = 0; r < 2; r++)
        fprintf(f.fp, "%d,%.10g,%.10g\n", r + 1, pl->lam[r],
                pl->trace > 0 ? pl->lam[r] / pl->trace : 0.0);
    if (gmf_io_commit(&f)) return fail("%s", gmf_errmsg());
    if (path_of(path, sizeof path, o->out, "pcs.npy")) return 1;
    const size_t shape[2] = {2, pl->d};
    if (gmf_io_write_npy(path, pl->P, 2, shape)) return fail("%s", gmf_errmsg());
    return 0;
}

int gmf_cli_project(int argc, char **argv) {
    options o;
    int st = parse_options(argc, argv, &o);
    if (st >= 0) return st;
    gmf_project_epoch *ep = NULL, *fep = NULL;
    size_t nep = 0, nfep = 0;
    plane pl = {0};
    int rc = 1;
    if (list_snapshots(o.gmdir, "mu", "GM", &ep, &nep) || make_plane(&o, ep, nep, &pl)) goto done;
    if (o.fcdir && list_snapshots(o.fcdir, "beta", "FC", &fep, &nfep)) goto done;
    if (make_dirs(o.out) || write_outputs(&o, &pl, ep, nep, fep, nfep)) goto done;
    printf("%s: K = %zu, d = %zu, %s covariance; plane from epoch %zu: eigenvalues %.6g, %.6g "
           "(%.1f%% of the variance); %zu GM snapshots, %zu FC snapshots -> %s/\n",
           CMD, pl.K, pl.d, pl.full ? "full" : "diagonal", pl.epoch, pl.lam[0], pl.lam[1],
           pl.trace > 0 ? 100 * (pl.lam[0] + pl.lam[1]) / pl.trace : 0.0, nep, nfep, o.out);
    rc = 0;
done:
    free(pl.P);
    free(ep);
    free(fep);
    return rc;
}
