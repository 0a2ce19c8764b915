use super::*;

fn sine(hz: f64, ms: u32, amp: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (amp * (std::f64::consts::TAU * hz * f64::from(i) / 8000.0).sin()) as i16)
        .collect()
}

/// Something like speech: a noisy, wobbling sound that is no single tone.
fn babble(ms: u32, seed: u32) -> Vec<i16> {
    let mut x = seed;
    (0..ms * 8)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = f64::from((x >> 16) as u16 as i16) / 4.0;
            let t = f64::from(i) / 8000.0;
            (noise
                + 3000.0 * (std::f64::consts::TAU * 300.0 * t).sin()
                + 2500.0 * (std::f64::consts::TAU * 1130.0 * t).sin()) as i16
        })
        .collect()
}

/// Feeds `pcm` as consecutive frames; returns the next (ms, ts).
struct Feed {
    ms: u64,
    ts: u32,
    ssrc: u32,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            ms: 0,
            ts: 1000,
            ssrc: 7,
        }
    }

    fn encoded(&mut self, ear: &mut Ear, bytes: &[u8]) {
        for f in bytes.chunks_exact(FRAME_SAMPLES) {
            ear.frame(self.ms, 0, self.ts, self.ssrc, f);
            self.ms += 20;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    fn pcm(&mut self, ear: &mut Ear, pcm: &[i16]) {
        let p = Prompt::from_pcm("x", pcm.to_vec());
        self.encoded(ear, p.frames(Codec::Pcmu));
    }

    fn prompt(&mut self, ear: &mut Ear, p: &Prompt, frames: usize) {
        let bytes = p.frames(Codec::Pcmu);
        self.encoded(ear, &bytes[..(frames * FRAME_SAMPLES).min(bytes.len())]);
    }
}

fn kinds(ear: &Ear) -> Vec<Kind> {
    ear.finish().into_iter().map(|s| s.kind).collect()
}

fn prompt(name: &str) -> Kind {
    Kind::Prompt(name.into())
}

#[test]
fn prompts_then_silence_then_the_volunteers_tone_are_told_apart() {
    let welcome = Prompt::from_pcm("welcome", sine(500.0, 400, 8000.0));
    let menu = Prompt::from_pcm("menu", sine(700.0, 600, 8000.0));
    let mut ear = Ear::new(PromptBook::new(&[welcome.clone(), menu.clone()]), vec![]);
    let mut f = Feed::new();
    f.prompt(&mut ear, &welcome, 100);
    f.prompt(&mut ear, &menu, 100);
    f.pcm(&mut ear, &vec![0; 8 * 1500]);
    f.pcm(&mut ear, &sine(1000.0, 3000, 5000.0));
    assert_eq!(
        kinds(&ear),
        vec![
            prompt("welcome"),
            prompt("menu"),
            Kind::Silence,
            Kind::Tone(1000)
        ]
    );
    let s = ear.finish();
    assert_eq!((s[0].start_ms, s[0].end_ms), (0, 400));
    assert_eq!((s[3].start_ms, s[3].end_ms), (2500, 5500));
}

#[test]
fn a_prompt_played_twice_is_heard_twice_and_a_cut_prompt_still_counts() {
    let menu = Prompt::from_pcm("menu", sine(700.0, 600, 8000.0));
    let mut ear = Ear::new(PromptBook::new(std::slice::from_ref(&menu)), vec![]);
    let mut f = Feed::new();
    f.prompt(&mut ear, &menu, 100);
    f.prompt(&mut ear, &menu, 100);
    f.pcm(&mut ear, &vec![0; 8 * 200]);
    f.prompt(&mut ear, &menu, 4); // barge-in: four frames, then the key
    ear.pressed(f.ms, '2');
    assert_eq!(
        kinds(&ear),
        vec![
            prompt("menu"),
            prompt("menu"),
            prompt("menu"),
            Kind::Pressed('2')
        ]
    );
    assert_eq!(ear.prompts_so_far(), vec!["menu", "menu", "menu"]);
}

#[test]
fn a_recorded_prompt_goes_on_through_its_pauses_and_shared_silence_starts_nothing() {
    // Two "recordings" that both hold digital silence: the silence frames are
    // shared, so only their place in a run says whose they are.
    let mut a = babble(300, 1);
    a.extend(vec![0; 8 * 200]);
    a.extend(babble(300, 2));
    let mut b = vec![0; 8 * 100];
    b.extend(babble(400, 3));
    let (a, b) = (Prompt::from_pcm("welcome", a), Prompt::from_pcm("menu", b));
    let mut ear = Ear::new(PromptBook::new(&[a.clone(), b.clone()]), vec![]);
    let mut f = Feed::new();
    f.pcm(&mut ear, &vec![0; 8 * 1200]); // silence before: no prompt yet
    f.prompt(&mut ear, &a, 1000);
    f.prompt(&mut ear, &b, 1000); // starts with 5 shared frames
    let got = ear.finish();
    let k: Vec<Kind> = got.iter().map(|s| s.kind.clone()).collect();
    assert_eq!(k, vec![Kind::Silence, prompt("welcome"), prompt("menu")]);
    assert_eq!((got[1].start_ms, got[1].end_ms), (1200, 2000));
}

#[test]
fn ringback_bursts_make_one_ringback_and_other_tones_stay_tones() {
    let mut ear = Ear::new(PromptBook::new(&[]), vec![450.0]);
    let mut f = Feed::new();
    for _ in 0..3 {
        f.pcm(&mut ear, &sine(450.0, 1000, 5000.0));
        f.pcm(&mut ear, &vec![0; 8 * 4000]);
    }
    f.pcm(&mut ear, &sine(450.0, 1000, 5000.0));
    f.pcm(&mut ear, &sine(1000.0, 2000, 5000.0));
    f.pcm(&mut ear, &babble(1000, 9));
    assert_eq!(
        kinds(&ear),
        vec![
            Kind::Ringback { hz: 450, bursts: 4 },
            Kind::Tone(1000),
            Kind::Sound
        ]
    );
}

#[test]
fn tone_frequencies_are_measured_to_the_hertz_through_g711() {
    for hz in [350.0, 425.0, 450.0, 1000.0, 1400.0, 2900.0] {
        let p = Prompt::from_pcm("t", sine(hz, 200, 4000.0));
        let mut pcm = [0i16; FRAME_SAMPLES];
        for frame in p.frames(Codec::Pcmu).chunks_exact(FRAME_SAMPLES) {
            Codec::Pcmu.decode_into(frame, &mut pcm);
            match measure(&pcm) {
                Frame::Tone(got) => assert!((got - hz).abs() < 3.0, "{hz}: {got}"),
                other => panic!("{hz}: {other:?}"),
            }
        }
    }
    let mut pcm = [0i16; FRAME_SAMPLES];
    pcm.copy_from_slice(&babble(20, 5));
    assert_eq!(measure(&pcm), Frame::Sound);
}

#[test]
fn the_meter_says_silence_tone_or_sound_per_second() {
    let mut m = Meter::default();
    assert_eq!(m.take(), "nothing received");
    let feed = |m: &mut Meter, pcm: &[i16]| {
        let p = Prompt::from_pcm("x", pcm.to_vec());
        for f in p.frames(Codec::Pcma).chunks_exact(FRAME_SAMPLES) {
            m.frame(8, f);
        }
    };
    feed(&mut m, &vec![0; 8000]);
    assert_eq!(m.take(), "silence");
    feed(&mut m, &sine(450.0, 1000, 5000.0));
    assert_eq!(m.take(), "a tone of 450 Hz at -19 dBFS");
    feed(&mut m, &babble(1000, 4));
    assert!(m.take().starts_with("sound at"));
}

#[test]
fn the_timeline_reads_in_words() {
    let welcome = Prompt::from_pcm("welcome", sine(500.0, 400, 8000.0));
    let mut ear = Ear::new(PromptBook::new(std::slice::from_ref(&welcome)), vec![450.0]);
    let mut f = Feed::new();
    f.prompt(&mut ear, &welcome, 100);
    ear.pressed(200, '2');
    f.pcm(&mut ear, &sine(450.0, 1000, 5000.0));
    f.pcm(&mut ear, &sine(1000.0, 1000, 5000.0));
    assert_eq!(
        format_timeline(&ear.finish()),
        "    0.0 s  prompt welcome (0.4 s)\n    0.2 s  pressed key 2\n    0.4 s  \
         ringback 450 Hz (1 burst, 1.0 s)\n    1.4 s  tone 1000 Hz (1.0 s)\n"
    );
}
