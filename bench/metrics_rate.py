"""Time of `evaluate_rank` against the common per-query NumPy reference loop.

    python bench/metrics_rate.py                 # MARS- and LS-VID-sized problems
    python bench/metrics_rate.py --large         # also 10^4 x 10^5 through evaluate_features
    python bench/metrics_rate.py --rerank        # also re-ranking on the MARS-sized problem
    python bench/metrics_rate.py --tiny          # 200 x 1,000 problems: seconds (tests)

Problems: MARS 1,980 queries × 11,310 gallery tracklets (the query-in-gallery protocol),
LS-VID-sized 3,151 × 14,943 (the order of its test split), with random clustered
features (625 / 1,041 identities, 6 / 15 cameras) so that each query has a realistic
number of same-id gallery items. The reference is the loop used by the PyTorch re-ID code
this project replaces (`np.argsort` over the whole matrix, then one Python iteration per
query); both sides get the same float32 distance matrix and must agree. The last line is
JSON.
"""

import json
import time

import numpy as np
from absl import app, flags

from reidjax import cli
from reidjax.evaluation import metrics

_LARGE = flags.DEFINE_bool("large", False, "Also a 10^4 x 10^5 problem.")
_RERANK = flags.DEFINE_bool("rerank", False, "Also time re-ranking (MARS).")
_TINY = flags.DEFINE_bool("tiny", False, "Problems of 200 x 1,000 (tests).")


def reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The per-query loop of the common PyTorch re-ID evaluation code."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(len(q_pids)):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        pos_idx = np.where(raw_cmc == 1)
        max_pos_idx = np.max(pos_idx)
        all_inp.append(cmc[max_pos_idx] / (max_pos_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        all_ap.append(tmp_cmc.sum() / num_rel)
    return np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_cmc), np.mean(all_ap)


def problem(rng, nq, ng, ids, cams, dim=128):
    centres = rng.normal(size=(ids, dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    qf = centres[q_pids] + 1.5 * rng.normal(size=(nq, dim)).astype(np.float32)
    gf = centres[g_pids] + 1.5 * rng.normal(size=(ng, dim)).astype(np.float32)
    return qf, gf, q_pids, g_pids, rng.integers(0, cams, nq), rng.integers(0, cams, ng)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main(argv):
    del argv
    args = flags.FLAGS
    rng = np.random.default_rng(0)
    results = {}
    sizes = {"mars": (1980, 11310, 625, 6), "lsvid": (3151, 14943, 1041, 15)}
    if args.tiny:
        sizes = {"mars": (200, 1000, 60, 6), "lsvid": (200, 1000, 80, 15)}
    for name, (nq, ng, ids, cams) in sizes.items():
        qf, gf, q_pids, g_pids, q_cams, g_cams = problem(rng, nq, ng, ids, cams)
        dist, t_dist = timed(metrics.pairwise_distances, qf, gf)
        ours, t_ours = timed(metrics.evaluate_rank, dist, q_pids, g_pids, q_cams, g_cams)
        (cmc, m_ap), t_ref = timed(reference_eval, dist, q_pids, g_pids, q_cams, g_cams)
        assert abs(ours["mAP"] - m_ap) < 1e-6 and np.allclose(ours["cmc"], cmc, atol=1e-6)
        _, t_feat = timed(metrics.evaluate_features, qf, gf, q_pids, g_pids, q_cams, g_cams)
        results[name] = {
            "queries": nq,
            "gallery": ng,
            "distances_s": round(t_dist, 3),
            "evaluate_rank_s": round(t_ours, 3),
            "reference_loop_s": round(t_ref, 3),
            "speedup": round(t_ref / t_ours, 2),
            "evaluate_features_s": round(t_feat, 3),
            "mAP": round(ours["mAP"], 4),
        }
        print(
            f"{name:6s} {nq}x{ng}: evaluate_rank {t_ours:.2f} s, reference loop {t_ref:.2f} s "
            f"({t_ref / t_ours:.1f}x); distances {t_dist:.2f} s; features->metrics "
            f"{t_feat:.2f} s; mAP {ours['mAP']:.4f} (both agree)",
            flush=True,
        )
        if args.rerank and name == "mars":
            q_q = metrics.pairwise_distances(qf, qf)
            g_g = metrics.pairwise_distances(gf, gf)
            reranked, t_rr = timed(metrics.re_ranking, dist, q_q, g_g)
            rr = metrics.evaluate_rank(reranked, q_pids, g_pids, q_cams, g_cams)
            results[name].update(rerank_s=round(t_rr, 2), rerank_mAP=round(rr["mAP"], 4))
            print(f"        re-ranking {t_rr:.1f} s, mAP {rr['mAP']:.4f}", flush=True)
    if args.large:
        qf, gf, q_pids, g_pids, q_cams, g_cams = problem(rng, 10_000, 100_000, 5000, 8)
        ours, t = timed(metrics.evaluate_features, qf, gf, q_pids, g_pids, q_cams, g_cams)
        results["large"] = {"queries": 10_000, "gallery": 100_000, "evaluate_features_s": t}
        print(f"large  10000x100000: evaluate_features {t:.1f} s (chunked, no full matrix)")
    print(json.dumps(results))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
