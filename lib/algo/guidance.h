/* guidance.h - classifier-free guidance with an interval (docs/math.md,
 * "Guidance"): v_w = v(.|null) + scale (v(.|c) - v(.|null)) for rows whose
 * time t lies in [t_lo, t_hi], v(.|c) elsewhere.  scale 1 (or a teacher
 * without classes) is no guidance.  One struct for the teacher's setting,
 * the distiller's prediction and correction calls and the sampler. */
#ifndef FMD_ALGO_GUIDANCE_H
#define FMD_ALGO_GUIDANCE_H

typedef struct fmd_guidance {
    float scale;
    float t_lo, t_hi;
} fmd_guidance;

#endif
